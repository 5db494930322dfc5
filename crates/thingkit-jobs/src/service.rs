//! [`Jobs`]: the driver a broker and the control plane use — read the store, decide with the
//! pure functions of this crate, write (durably) before anything is published — and the
//! rollout engine around it: every job is paced by a [`Pacer`] (AWS's default is 1000 things
//! per minute, J-11), its outcomes counted for the exponential rate (J-12) and the abort
//! criteria (J-13, J-14), executions time out on the deadlines stored in them (J-15 … J-17),
//! and FAILED or TIMED_OUT executions are retried per `jobExecutionsRetryConfig` (J-18, J-19).
//!
//! Nothing here scans all executions per event: the rollout queue and the pacing state are in
//! the pacer (O(log n) per event), deadlines in a min-heap, and each job's count of
//! non-terminal executions in memory, so a snapshot job completes without a scan. Only
//! [`Jobs::open`] (a restart) and the control plane's list and count calls read a whole job —
//! and, when servers share the store ([`Jobs::open_with`]), each lease renewal reads the jobs
//! this engine paces, so that outcomes stored by the other servers count.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use crate::device::{self, Limits, OutMessage, ThingJob, notifications, parse_request_topic};
use crate::error::Error;
use crate::execution::{ExecutionStatus, JobExecution, check_status_details};
use crate::job::{Job, JobId, JobStatus, MAX_COMMENT_CHARS, MAX_REASON_CODE, TargetSelection};
use crate::lease::{PacingLease, SoleServer};
use crate::rollout::{self, ExecutionTimer, OutcomeCounts};
use crate::schedule::{JobPlan, Pacer, Report, Timers};
use crate::store::JobStore;

/// `reasonCode` of a job canceled by its abort criteria (J-14).
pub const ABORT_REASON_CODE: &str = "AUTOMATED_ABORT";
/// `comment` of a job canceled by its abort criteria (J-14).
pub const ABORT_COMMENT: &str = "Job canceled because its abort criteria were met.";

/// A store and the device-request limits, answering device requests and control-plane calls,
/// and pacing rollouts, timeouts, aborts and retries (module docs).
pub struct Jobs<S: JobStore> {
    store: S,
    limits: Limits,
    pacer: Pacer<JobId, String>,
    /// The IN_PROGRESS executions' timers, from their stored deadlines.
    deadlines: Timers<JobId, String>,
    /// Non-terminal executions per IN_PROGRESS job, kept so completion needs no scan.
    open: HashMap<JobId, u64>,
    /// Scheduled starts and ends of rollouts (`schedulingConfig`), earliest first.
    schedule: BinaryHeap<Reverse<(u64, JobId, Boundary)>>,
    /// Who may pace which job ([`SoleServer`]: this engine, every job).
    lease: Box<dyn PacingLease>,
    /// With a shared lease: the jobs this engine paces now.
    held: HashSet<JobId>,
    /// With a shared lease: when to renew it next.
    renew_at: u64,
    /// With a shared lease: when the leases of `held` run out unless renewed.
    held_until: u64,
}

/// A `schedulingConfig` boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Boundary {
    Start,
    End,
}

impl<S: JobStore> std::fmt::Debug for Jobs<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("limits", &self.limits)
            .field("open_jobs", &self.open.len())
            .field("deadlines", &self.deadlines.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

/// A job's executions counted by status: DescribeJob's `jobProcessDetails`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessDetails {
    /// CANCELED executions.
    pub canceled: u64,
    /// SUCCEEDED executions.
    pub succeeded: u64,
    /// FAILED executions.
    pub failed: u64,
    /// REJECTED executions.
    pub rejected: u64,
    /// QUEUED executions.
    pub queued: u64,
    /// IN_PROGRESS executions.
    pub in_progress: u64,
    /// REMOVED executions.
    pub removed: u64,
    /// TIMED_OUT executions.
    pub timed_out: u64,
    /// Targets the rollout has not reached yet (no execution yet).
    pub waiting: u64,
}

/// UpdateJob's changes (each `None` keeps what the job has) and AssociateTargetsWithJob's
/// added targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobUpdate {
    /// A new description.
    pub description: Option<String>,
    /// A new `jobExecutionsRolloutConfig`: the rate from the next minute on.
    pub rollout: Option<crate::job::RolloutConfig>,
    /// A new `abortConfig`: checked from the next outcome on, over the counts so far.
    pub abort: Option<crate::job::AbortConfig>,
    /// A new `timeoutConfig`: for executions queued from now on (a started timer does not
    /// change, J-15).
    pub timeout: Option<crate::job::TimeoutConfig>,
    /// A new `jobExecutionsRetryConfig`: may only set retries to 0 (J-18).
    pub retry: Option<crate::job::RetryConfig>,
    /// A new `presignedUrlConfig` (kept and shown; thingkit substitutes no URLs).
    pub presigned_url_config: Option<serde_json::Value>,
    /// Targets (ARNs) to record as added (AssociateTargetsWithJob); the caller gives the
    /// things they reach to [`Jobs::add_thing`].
    pub add_targets: Vec<String>,
}

/// How [`Jobs::write_thing_as`] stores an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Insert or replace.
    Put,
    /// Only if the thing has no execution of the job ([`JobStore::create_execution`]).
    Create,
}

/// What storing one execution change set in motion.
#[derive(Debug, Default)]
struct Followups {
    aborted: Vec<(JobId, usize)>,
    retries: Vec<JobExecution>,
}

/// The pacing plan and retry rules of a job, from its wire configurations.
///
/// # Errors
///
/// [`Error::InvalidRequest`] naming the configuration that is out of range.
pub fn plan_of(job: &Job) -> Result<(JobPlan, Option<rollout::RetryConfig>), Error> {
    let rollout = match &job.rollout {
        Some(r) => r.to_rollout()?,
        None => rollout::RolloutConfig::default(),
    };
    let abort = job.abort.as_ref().map(|a| a.to_abort()).transpose()?;
    let timeout = match &job.timeout {
        Some(t) => t.to_timeout()?,
        None => rollout::TimeoutConfig::default(),
    };
    let retry = job
        .retry
        .as_ref()
        .map(|r| r.to_retry(&timeout))
        .transpose()?;
    Ok((
        JobPlan {
            rollout,
            abort,
            timeout,
        },
        retry,
    ))
}

/// CancelJob's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelJob {
    /// Also cancel IN_PROGRESS executions.
    pub force: bool,
    /// `[A-Z0-9_]+`, at most 128 characters.
    pub reason_code: Option<String>,
    /// At most 2028 characters.
    pub comment: Option<String>,
}

impl<S: JobStore> Jobs<S> {
    /// Jobs kept in `store`, device requests checked against `limits`. For a store that
    /// already holds jobs, use [`Jobs::open`] so their rollouts and timers resume.
    pub fn new(store: S, limits: Limits) -> Self {
        Jobs {
            store,
            limits,
            pacer: Pacer::new(),
            deadlines: Timers::new(),
            open: HashMap::new(),
            schedule: BinaryHeap::new(),
            lease: Box::new(SoleServer),
            held: HashSet::new(),
            renew_at: 0,
            held_until: 0,
        }
    }

    /// Jobs kept in `store` after a restart at `now`: every IN_PROGRESS job's rollout resumes
    /// with the things it had not notified yet (its stored rollout list less the things that
    /// have an execution), its outcome counts rebuilt from the stored executions, and the
    /// deadlines of IN_PROGRESS executions armed again. The rate window restarts at `now`, less
    /// what was notified in the minute before, so a crash loop cannot outrun the rate.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when the store fails.
    pub fn open(store: S, limits: Limits, now: u64) -> Result<Self, Error> {
        Self::open_with(store, limits, Box::new(SoleServer), now)
    }

    /// [`Jobs::open`] for one of several servers sharing `store`: this engine paces (rollout,
    /// schedule, abort criteria, completion) only the jobs whose `lease` it holds, resuming
    /// each from the stored state when it claims it, and renews its leases from
    /// [`Jobs::tick`] every [`PacingLease::renew_every`] seconds — taking over the jobs of a
    /// server that stopped renewing, and reading the stored executions of the jobs it paces so
    /// that outcomes reported through other servers count (J-12, J-13) and complete the job.
    /// Device requests and control-plane calls work on every job, whoever paces it. With
    /// [`SoleServer`] this is [`Jobs::open`].
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when the store or the lease fails.
    pub fn open_with(
        store: S,
        limits: Limits,
        lease: Box<dyn PacingLease>,
        now: u64,
    ) -> Result<Self, Error> {
        let mut jobs = Jobs::new(store, limits);
        jobs.lease = lease;
        if jobs.shared() {
            jobs.renew(now)?;
            return Ok(jobs);
        }
        for job in jobs.store.list_jobs()? {
            jobs.adopt(job, now)?;
        }
        Ok(jobs)
    }

    /// Whether servers share the jobs (a lease that must be renewed).
    fn shared(&self) -> bool {
        self.lease.renew_every().is_some()
    }

    /// Whether this engine paces `id`: always alone, with a shared lease while it holds it.
    fn paces(&self, id: &JobId) -> bool {
        !self.shared() || self.held.contains(id)
    }

    /// Claims the lease of the job `id` just created here; `false` when it went to another
    /// server or the lease failed (the next renewal, here or elsewhere, adopts the job then).
    fn claim(&mut self, id: &JobId, now: u64) -> bool {
        if !self.shared() {
            return true;
        }
        match self.lease.hold(std::slice::from_ref(id), now) {
            Ok(held) if held.contains(id) => {
                self.held.insert(id.clone());
                true
            }
            _ => false,
        }
    }

    /// Stops pacing `id` (finished, canceled, deleted) and gives its lease up.
    fn let_go(&mut self, id: &JobId) {
        if self.held.remove(id) {
            // A failed release expires on its own.
            let _ = self.lease.release(id);
        }
    }

    /// Stops pacing `id` without giving its lease up (another server holds it now, or ours ran
    /// out): its rollout queue and counts are dropped; the store keeps what the next holder
    /// needs.
    fn forget(&mut self, id: &JobId) {
        self.held.remove(id);
        self.pacer.remove_job(id);
        self.open.remove(id);
    }

    /// With a shared lease, when due at `now`: renews the leases of the live (IN_PROGRESS or
    /// SCHEDULED) jobs, adopts the ones newly held, forgets the ones lost, and reconciles the
    /// ones kept with their stored executions. Returns the messages an abort caused.
    fn renew(&mut self, now: u64) -> Result<Vec<OutMessage>, Error> {
        let Some(every) = self.lease.renew_every() else {
            return Ok(Vec::new());
        };
        if now < self.renew_at {
            return Ok(Vec::new());
        }
        let live: Vec<Job> = self
            .store
            .list_jobs()?
            .into_iter()
            .filter(|j| matches!(j.status, JobStatus::InProgress | JobStatus::Scheduled))
            .collect();
        let ids: Vec<JobId> = live.iter().map(|j| j.job_id.clone()).collect();
        let held = match self.lease.hold(&ids, now) {
            Ok(held) => held,
            Err(e) => {
                if now >= self.held_until {
                    for id in self.held.clone() {
                        self.forget(&id);
                    }
                }
                return Err(e);
            }
        };
        self.renew_at = now.saturating_add(every);
        self.held_until = now.saturating_add(self.lease.lasts().unwrap_or(u64::MAX - now));
        for id in self.held.clone() {
            if !held.contains(&id) {
                self.forget(&id);
                if !ids.contains(&id) {
                    // Finished or canceled through another server: free its lease.
                    let _ = self.lease.release(&id);
                }
            }
        }
        let mut out = Vec::new();
        for job in live {
            let id = job.job_id.clone();
            if !held.contains(&id) {
                continue;
            }
            if self.held.insert(id.clone()) {
                self.adopt(job, now)?;
            } else if job.status == JobStatus::InProgress {
                out.extend(self.reconcile(&job, now)?);
            }
        }
        Ok(out)
    }

    /// Reads the stored executions of `job`, which this engine paces, so that what other
    /// servers stored counts: the outcome counts (which may abort it), its open executions
    /// (which may complete it) and the IN_PROGRESS executions' deadlines; and takes its stored
    /// configuration (an UpdateJob through another server) as the pacer's plan.
    fn reconcile(&mut self, job: &Job, now: u64) -> Result<Vec<OutMessage>, Error> {
        let id = &job.job_id;
        if let Ok((plan, _)) = plan_of(job) {
            let _ = self.pacer.set_plan(id, plan);
        }
        let executions = self.store.executions_of_job(id)?;
        let (counts, open) = self.count(id, &executions);
        self.open.insert(id.clone(), open);
        let mut out = Vec::new();
        if let Ok(Some(aborted)) = self.pacer.reconcile(id, counts) {
            let followups = Followups {
                aborted: vec![(aborted.job, aborted.criterion)],
                retries: Vec::new(),
            };
            out.extend(self.follow_up(followups, now)?);
        }
        self.complete_if_done(id, now)?;
        Ok(out)
    }

    /// `id`'s stored executions counted by outcome, and its non-terminal ones; the IN_PROGRESS
    /// ones' deadlines armed.
    fn count(&mut self, id: &JobId, executions: &[JobExecution]) -> (OutcomeCounts, u64) {
        let mut counts = OutcomeCounts::default();
        let mut open = 0;
        for e in executions {
            match e.status {
                ExecutionStatus::Succeeded => counts.succeeded += 1,
                ExecutionStatus::Failed => counts.failed += 1,
                ExecutionStatus::Rejected => counts.rejected += 1,
                ExecutionStatus::TimedOut => counts.timed_out += 1,
                _ => {}
            }
            if !e.status.is_terminal() {
                open += 1;
            }
            if e.status == ExecutionStatus::InProgress
                && self.deadlines.get(id, &e.thing_name).is_none()
            {
                self.deadlines.set(
                    id,
                    &e.thing_name,
                    ExecutionTimer::resume(None, e.timeout_at),
                );
            }
        }
        (counts, open)
    }

    /// Starts pacing the stored `job` at `now`: its schedule, and for an IN_PROGRESS job its
    /// rollout from the stored state (module docs of [`Jobs::open`]).
    fn adopt(&mut self, job: Job, now: u64) -> Result<(), Error> {
        let times = job
            .scheduling
            .as_ref()
            .map(|s| s.stored())
            .unwrap_or_default();
        if matches!(job.status, JobStatus::InProgress | JobStatus::Scheduled)
            && let Some(end) = times.end
        {
            self.schedule
                .push(Reverse((end, job.job_id.clone(), Boundary::End)));
        }
        if job.status == JobStatus::Scheduled {
            let start = times.start.unwrap_or(now);
            self.schedule
                .push(Reverse((start, job.job_id.clone(), Boundary::Start)));
            return Ok(());
        }
        if job.status != JobStatus::InProgress {
            return Ok(());
        }
        let id = job.job_id.clone();
        let executions = self.store.executions_of_job(&id)?;
        let (counts, open) = self.count(&id, &executions);
        let executed: HashSet<&str> = executions.iter().map(|e| e.thing_name.as_str()).collect();
        // A job whose stored configuration no longer converts keeps the defaults: it was
        // valid when created, and refusing to start the server over it would be worse.
        let plan = plan_of(&job).map(|(p, _)| p).unwrap_or_default();
        let notified = u64::try_from(executions.len()).unwrap_or(u64::MAX);
        // First executions queued in the last minute spent this minute's rate already.
        let recent = executions
            .iter()
            .filter(|e| e.execution_number == 1 && e.queued_at.saturating_add(60) > now)
            .count();
        let recent = u32::try_from(recent).unwrap_or(u32::MAX);
        self.pacer.remove_job(&id);
        self.pacer
            .restore_job(id.clone(), plan, now, notified, counts, recent)
            .map_err(|e| Error::store(format!("pacer: {e}")))?;
        for thing in self.store.rollout(&id)? {
            if !executed.contains(thing.as_str()) {
                self.pacer
                    .enqueue(&id, thing, now)
                    .map_err(|e| Error::store(format!("pacer: {e}")))?;
            }
        }
        self.open.insert(id.clone(), open);
        self.complete_if_done(&id, now)?;
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, giving up the driver.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The earliest instant at which [`Jobs::tick`] may have work (a thing to notify or an
    /// execution to time out); a driver sleeps until then, or at most a few seconds.
    pub fn next_wakeup(&self) -> Option<u64> {
        [
            self.pacer.next_wakeup(),
            self.deadlines.next_deadline(),
            self.schedule.peek().map(|Reverse((at, _, _))| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does what is due at `now`: notifies the things each job's rollout rate allows (their
    /// executions are created QUEUED), times out executions whose deadline passed (J-16), and
    /// applies the aborts and retries these cause. Returns the messages to publish. With a
    /// shared lease ([`Jobs::open_with`]) it first renews the leases when that is due.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when the store or the lease fails; what was stored before the failure
    /// stays, and a thing whose execution could not be created is notified again after the
    /// next [`Jobs::open`].
    pub fn tick(&mut self, now: u64) -> Result<Vec<OutMessage>, Error> {
        let mut out = self.renew(now)?;
        while self
            .schedule
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            let Some(Reverse((_, id, boundary))) = self.schedule.pop() else {
                break;
            };
            if !self.paces(&id) {
                // Another server paces it, and has this boundary in its own schedule.
                continue;
            }
            match boundary {
                Boundary::Start => self.start_rollout(&id, now)?,
                Boundary::End => out.extend(self.end_rollout(&id, now)?),
            }
        }
        out.extend(self.release(now)?);
        for due in self.deadlines.expire(now) {
            if let Some(msgs) = self.time_out_execution(&due.job, &due.thing, now)? {
                out.extend(msgs);
            }
        }
        Ok(out)
    }

    /// A SCHEDULED job's start time came: it becomes IN_PROGRESS and its rollout begins (its
    /// first rate window opens now).
    fn start_rollout(&mut self, id: &JobId, now: u64) -> Result<(), Error> {
        let Some(mut job) = self.store.get_job(id)? else {
            return Ok(());
        };
        if job.status != JobStatus::Scheduled {
            return Ok(());
        }
        job.status = JobStatus::InProgress;
        job.last_updated_at = now;
        self.store.put_job(&job)?;
        self.begin_rollout(&job, now)
    }

    /// Puts `job`'s rollout list on the pacer from `now`.
    fn begin_rollout(&mut self, job: &Job, now: u64) -> Result<(), Error> {
        let id = job.job_id.clone();
        let (plan, _) = plan_of(job)?;
        self.pacer.remove_job(&id);
        self.pacer
            .add_job(id.clone(), plan, now)
            .map_err(|e| Error::store(format!("pacer: {e}")))?;
        for thing in self.store.rollout(&id)? {
            self.pacer
                .enqueue(&id, thing, now)
                .map_err(|e| Error::store(format!("pacer: {e}")))?;
        }
        self.open.entry(id).or_insert(0);
        Ok(())
    }

    /// A job's end time came: `STOP_ROLLOUT` notifies no one more (the job completes when
    /// the executions it has end), `CANCEL` cancels it, `FORCE_CANCEL` cancels it with its
    /// IN_PROGRESS executions.
    fn end_rollout(&mut self, id: &JobId, now: u64) -> Result<Vec<OutMessage>, Error> {
        let Some(job) = self.store.get_job(id)? else {
            return Ok(Vec::new());
        };
        if !matches!(job.status, JobStatus::InProgress | JobStatus::Scheduled) {
            return Ok(Vec::new());
        }
        let behavior = job
            .scheduling
            .as_ref()
            .and_then(|s| s.stored().end_behavior)
            .unwrap_or_default();
        let force = match behavior {
            rollout::EndBehavior::StopRollout => {
                let _ = self.pacer.cancel(id);
                // The things never notified are dropped from the stored list too, so a
                // restart does not resume the rollout.
                self.store.put_rollout(id, &[])?;
                if job.status == JobStatus::InProgress {
                    self.complete_if_done(id, now)?;
                }
                return Ok(Vec::new());
            }
            rollout::EndBehavior::Cancel => false,
            rollout::EndBehavior::ForceCancel => true,
        };
        let cancel = CancelJob {
            force,
            reason_code: None,
            comment: Some(format!(
                "Canceled at the end of its schedule ({})",
                behavior.as_wire()
            )),
        };
        self.cancel_job(id, &cancel, now)
    }

    /// Creates the executions the pacer releases at `now`.
    fn release(&mut self, now: u64) -> Result<Vec<OutMessage>, Error> {
        let mut out = Vec::new();
        let mut jobs: HashMap<JobId, Option<Job>> = HashMap::new();
        for n in self.pacer.due(now) {
            let job = match jobs.get(&n.job) {
                Some(j) => j.clone(),
                None => {
                    let j = self.store.get_job(&n.job)?;
                    jobs.insert(n.job.clone(), j.clone());
                    j
                }
            };
            let Some(job) = job else { continue };
            if job.status != JobStatus::InProgress {
                continue;
            }
            let timeout = job.timeout.map(|t| t.in_progress_timeout_in_minutes);
            let e = JobExecution::queued(n.job.clone(), n.thing.clone(), 1, timeout, now);
            // Created only if the thing has no execution of the job: not twice, even when
            // another server paced the job a moment ago.
            out.extend(self.write_thing_as(&n.thing, &[e], now, Write::Create)?);
        }
        Ok(out)
    }

    /// `thing`'s pending executions with their documents, for notifications and requests.
    fn thing_jobs(&self, thing: &str) -> Result<Vec<ThingJob>, Error> {
        self.thing_jobs_with(thing, None)
    }

    /// `thing`'s pending executions, and its execution of `named` whatever its status, each
    /// with its job's document. Terminal executions of other jobs are skipped before their
    /// jobs are read: a thing's history of finished jobs does not weigh on its requests.
    fn thing_jobs_with(&self, thing: &str, named: Option<&JobId>) -> Result<Vec<ThingJob>, Error> {
        let mut out = Vec::new();
        for execution in self.store.executions_of_thing(thing)? {
            if execution.status.is_terminal() && named != Some(&execution.job_id) {
                continue;
            }
            if let Some(job) = self.store.get_job(&execution.job_id)? {
                out.push(ThingJob {
                    execution,
                    document: job.document,
                });
            }
        }
        Ok(out)
    }

    /// Stores one execution change and keeps the engine's state in step with it: the job's
    /// count of open executions, the deadline, the outcome counts (which may abort the job)
    /// and a retry when the rules allow one.
    fn put_execution(
        &mut self,
        before: Option<&JobExecution>,
        e: &JobExecution,
        now: u64,
        followups: &mut Followups,
    ) -> Result<(), Error> {
        self.store.put_execution(e)?;
        self.account(before, e, now, followups)
    }

    /// Keeps the engine's state in step with the stored change `before` → `e` (see
    /// `put_execution`).
    fn account(
        &mut self,
        before: Option<&JobExecution>,
        e: &JobExecution,
        now: u64,
        followups: &mut Followups,
    ) -> Result<(), Error> {
        let was_open = before.is_some_and(|b| !b.status.is_terminal());
        let is_open = !e.status.is_terminal();
        if let Some(n) = self.open.get_mut(&e.job_id) {
            if is_open && !was_open {
                *n += 1;
            } else if was_open && !is_open {
                *n = n.saturating_sub(1);
            }
        }
        let deadline = (e.status == ExecutionStatus::InProgress)
            .then_some(e.timeout_at)
            .flatten();
        self.deadlines.set(
            &e.job_id,
            &e.thing_name,
            ExecutionTimer::resume(None, deadline),
        );
        if !was_open || is_open {
            return Ok(());
        }
        let report = match e.status {
            ExecutionStatus::Succeeded => Report::Succeeded,
            ExecutionStatus::Failed => Report::Failed,
            ExecutionStatus::Rejected => Report::Rejected,
            ExecutionStatus::TimedOut => Report::TimedOut,
            _ => return Ok(()),
        };
        if let Ok(Some(aborted)) = self
            .pacer
            .record_outcome(&e.job_id, &e.thing_name, report, now)
        {
            followups.aborted.push((aborted.job, aborted.criterion));
            return Ok(());
        }
        let failure = match e.status {
            ExecutionStatus::Failed => rollout::ExecutionFailure::Failed,
            ExecutionStatus::TimedOut => rollout::ExecutionFailure::TimedOut,
            _ => return Ok(()),
        };
        let Some(job) = self.store.get_job(&e.job_id)? else {
            return Ok(());
        };
        if job.status != JobStatus::InProgress || job.retry.is_none() {
            return Ok(());
        }
        let Ok((_, Some(retry))) = plan_of(&job) else {
            return Ok(());
        };
        let attempts = rollout::RetryAttempts {
            after_failed: e.retries_after_failed,
            after_timed_out: e.retries_after_timed_out,
        };
        if rollout::retry_allowed(&retry, failure, &attempts) {
            let mut next = JobExecution::queued(
                e.job_id.clone(),
                e.thing_name.clone(),
                e.execution_number.saturating_add(1),
                e.in_progress_timeout_minutes,
                now,
            );
            next.retries_after_failed = e.retries_after_failed;
            next.retries_after_timed_out = e.retries_after_timed_out;
            match failure {
                rollout::ExecutionFailure::TimedOut => next.retries_after_timed_out += 1,
                _ => next.retries_after_failed += 1,
            }
            followups.retries.push(next);
        }
        Ok(())
    }

    /// Writes `changed` executions of `thing` and returns the notifications the change causes,
    /// then those of the retries and aborts it set in motion.
    fn write_thing(
        &mut self,
        thing: &str,
        changed: &[JobExecution],
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        self.write_thing_as(thing, changed, now, Write::Put)
    }

    /// [`Jobs::write_thing`], each execution stored as `how` says; one that
    /// [`Write::Create`] finds already there changes nothing and notifies no one.
    fn write_thing_as(
        &mut self,
        thing: &str,
        changed: &[JobExecution],
        now: u64,
        how: Write,
    ) -> Result<Vec<OutMessage>, Error> {
        let before = self.thing_jobs(thing)?;
        let mut followups = Followups::default();
        let mut written = Vec::new();
        for e in changed {
            let prev = before
                .iter()
                .find(|b| b.execution.job_id == e.job_id)
                .map(|b| b.execution.clone());
            match how {
                Write::Put => self.put_execution(prev.as_ref(), e, now, &mut followups)?,
                Write::Create => {
                    if !self.store.create_execution(e)? {
                        continue;
                    }
                    self.account(prev.as_ref(), e, now, &mut followups)?;
                }
            }
            written.push(e);
        }
        if written.is_empty() {
            return Ok(Vec::new());
        }
        let after = self.thing_jobs(thing)?;
        let mut out = notifications(thing, &before, &after, now, &self.limits);
        out.extend(self.follow_up(followups, now)?);
        for e in written {
            self.complete_if_done(&e.job_id, now)?;
        }
        Ok(out)
    }

    fn follow_up(&mut self, followups: Followups, now: u64) -> Result<Vec<OutMessage>, Error> {
        let mut out = Vec::new();
        for retry in followups.retries {
            let thing = retry.thing_name.clone();
            out.extend(self.write_thing(&thing, &[retry], now)?);
        }
        for (job, _criterion) in followups.aborted {
            let cancel = CancelJob {
                force: false,
                reason_code: Some(ABORT_REASON_CODE.to_owned()),
                comment: Some(ABORT_COMMENT.to_owned()),
            };
            match self.cancel_job(&job, &cancel, now) {
                Ok(msgs) => out.extend(msgs),
                // Already canceled or completed by something else: nothing to abort.
                Err(Error::InvalidStateTransition { .. } | Error::ResourceNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// CreateJob: validates `job`, stores it IN_PROGRESS with its rollout list (the targets
    /// already resolved to thing names by the caller, duplicates dropped, first occurrence
    /// kept), and queues its things on the rollout: the ones its rate allows now get a QUEUED
    /// execution (number 1, version 1) at once; [`Jobs::tick`] releases the rest. Returns the
    /// `/notify` and `/notify-next` messages for the things notified now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] (the job or a thing name), [`Error::ResourceAlreadyExists`],
    /// [`Error::InternalError`].
    pub fn create_job(
        &mut self,
        mut job: Job,
        things: &[String],
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        job.validate()?;
        plan_of(&job)?;
        let scheduling = job
            .scheduling
            .as_ref()
            .map(|s| s.resolve(now))
            .transpose()?
            .unwrap_or_default();
        for t in things {
            if !device::is_valid_thing_name(t) {
                return Err(Error::request(format!("invalid thing name \"{t}\"")));
            }
        }
        if self.store.get_job(&job.job_id)?.is_some() {
            return Err(Error::ResourceAlreadyExists {
                job_id: job.job_id.to_string(),
            });
        }
        let start_later = scheduling.start.filter(|s| *s > now);
        job.status = match start_later {
            Some(_) => JobStatus::Scheduled,
            None => JobStatus::InProgress,
        };
        job.created_at = now;
        job.last_updated_at = now;
        job.completed_at = None;
        let mut seen = HashSet::new();
        let unique: Vec<String> = things
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .cloned()
            .collect();
        // The rollout list first: a crash before the job is stored leaves an orphan list that
        // the next CreateJob of this id replaces, never a job without its list.
        self.store.put_rollout(&job.job_id, &unique)?;
        self.store.put_job(&job)?;
        let id = job.job_id.clone();
        if !self.claim(&id, now) {
            // Another server took the job at once (or the lease failed): it paces the job.
            return Ok(Vec::new());
        }
        if let Some(end) = scheduling.end {
            self.schedule
                .push(Reverse((end, id.clone(), Boundary::End)));
        }
        if let Some(start) = start_later {
            self.schedule.push(Reverse((start, id, Boundary::Start)));
            return Ok(Vec::new());
        }
        self.open.insert(id.clone(), 0);
        self.begin_rollout(&job, now)?;
        let out = self.release(now)?;
        self.complete_if_done(&id, now)?;
        Ok(out)
    }

    /// A thing joined a target group of the CONTINUOUS job `id` (or was associated with it):
    /// it gets a QUEUED execution at once, outside rollout control (J-12). A thing whose
    /// execution is pending keeps it; one whose execution is terminal gets a new one (the next
    /// `executionNumber`, retry counts reset, J-19). Nothing happens for a job that is not an
    /// IN_PROGRESS continuous job.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InvalidRequest`] (thing name),
    /// [`Error::InternalError`].
    pub fn add_thing(
        &mut self,
        id: &JobId,
        thing: &str,
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        if !device::is_valid_thing_name(thing) {
            return Err(Error::request(format!("invalid thing name \"{thing}\"")));
        }
        let job = self.describe_job(id)?;
        if job.status != JobStatus::InProgress
            || job.target_selection != TargetSelection::Continuous
        {
            return Ok(Vec::new());
        }
        let number = match self.store.get_execution(thing, id)? {
            Some(e) if !e.status.is_terminal() => return Ok(Vec::new()),
            Some(e) => e.execution_number.saturating_add(1),
            None => 1,
        };
        // The server that paces the job knows whether its rollout still admits things; on
        // the others the job's status (IN_PROGRESS, checked above) is the answer.
        if self.paces(id)
            && !matches!(
                self.pacer.admit_late_joiner(id, thing.to_owned()),
                Ok(Some(_))
            )
        {
            return Ok(Vec::new());
        }
        let timeout = job.timeout.map(|t| t.in_progress_timeout_in_minutes);
        let e = JobExecution::queued(id.clone(), thing.to_owned(), number, timeout, now);
        self.write_thing(thing, &[e], now)
    }

    /// UpdateJob (and AssociateTargetsWithJob's record of its targets): validates the new
    /// configurations like CreateJob, stores the job, and gives a rolling job's pacer the new
    /// plan. Returns the job as stored.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InvalidRequest`] (a configuration, or a retry
    /// count raised after creation), [`Error::InternalError`].
    pub fn update_job(&mut self, id: &JobId, update: JobUpdate, now: u64) -> Result<Job, Error> {
        let mut job = self.describe_job(id)?;
        if let Some(retry) = &update.retry
            && retry.criteria_list.iter().any(|c| c.number_of_retries != 0)
        {
            return Err(Error::request(
                "jobExecutionsRetryConfig can only be updated to set numberOfRetries to 0",
            ));
        }
        if let Some(d) = update.description {
            job.description = Some(d);
        }
        if update.rollout.is_some() {
            job.rollout = update.rollout;
        }
        if update.abort.is_some() {
            job.abort = update.abort;
        }
        if update.timeout.is_some() {
            job.timeout = update.timeout;
        }
        if update.retry.is_some() {
            job.retry = update.retry;
        }
        if update.presigned_url_config.is_some() {
            job.presigned_url_config = update.presigned_url_config;
        }
        for t in update.add_targets {
            if !job.targets.contains(&t) {
                job.targets.push(t);
            }
        }
        job.validate()?;
        let (plan, _) = plan_of(&job)?;
        job.last_updated_at = now;
        self.store.put_job(&job)?;
        // A job the pacer no longer tracks (finished) needs no plan.
        let _ = self.pacer.set_plan(id, plan);
        Ok(job)
    }

    /// DescribeJob.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InternalError`].
    pub fn describe_job(&self, id: &JobId) -> Result<Job, Error> {
        self.store
            .get_job(id)?
            .ok_or_else(|| Error::ResourceNotFound {
                detail: format!("Job {id} not found"),
            })
    }

    /// ListJobs: every job, by id.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    pub fn list_jobs(&self) -> Result<Vec<Job>, Error> {
        self.store.list_jobs()
    }

    /// DescribeJob's `jobProcessDetails`: the job's executions counted by status, and the
    /// targets its rollout has not reached. Reads the job's executions (a control-plane call,
    /// not an event path).
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InternalError`].
    pub fn process_details(&self, id: &JobId) -> Result<ProcessDetails, Error> {
        let job = self.describe_job(id)?;
        let mut d = ProcessDetails::default();
        for e in self.store.executions_of_job(id)? {
            let n = match e.status {
                ExecutionStatus::Queued => &mut d.queued,
                ExecutionStatus::InProgress => &mut d.in_progress,
                ExecutionStatus::Succeeded => &mut d.succeeded,
                ExecutionStatus::Failed => &mut d.failed,
                ExecutionStatus::TimedOut => &mut d.timed_out,
                ExecutionStatus::Rejected => &mut d.rejected,
                ExecutionStatus::Removed => &mut d.removed,
                ExecutionStatus::Canceled => &mut d.canceled,
            };
            *n += 1;
        }
        d.waiting = match self.pacer.queued(id) {
            Some(n) => u64::try_from(n).unwrap_or(u64::MAX),
            // Paced by another server: its stored rollout list less the things reached.
            None if self.shared() && job.status == JobStatus::InProgress => {
                let reached: HashSet<String> = self
                    .store
                    .executions_of_job(id)?
                    .into_iter()
                    .map(|e| e.thing_name)
                    .collect();
                let waiting = self
                    .store
                    .rollout(id)?
                    .iter()
                    .filter(|t| !reached.contains(*t))
                    .count();
                u64::try_from(waiting).unwrap_or(u64::MAX)
            }
            None => 0,
        };
        Ok(d)
    }

    /// DescribeJobExecution (control plane).
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InternalError`].
    pub fn describe_execution(&self, job: &JobId, thing: &str) -> Result<JobExecution, Error> {
        self.store
            .get_execution(thing, job)?
            .ok_or_else(|| Error::ResourceNotFound {
                detail: format!("Job execution of job {job} on thing {thing} not found"),
            })
    }

    /// ListJobExecutionsForJob, by thing name.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    pub fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, Error> {
        self.store.executions_of_job(job)
    }

    /// ListJobExecutionsForThing, by job id.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    pub fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, Error> {
        self.store.executions_of_thing(thing)
    }

    /// CancelJob: the job becomes CANCELED with `comment` and `reasonCode`; its rollout stops
    /// (things not yet notified never are); QUEUED executions are canceled, IN_PROGRESS ones
    /// only with `force` (J-06, J-14).
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InvalidRequest`] (reason code, comment),
    /// [`Error::InvalidStateTransition`] (the job is already COMPLETED or CANCELED without
    /// force), [`Error::InternalError`].
    pub fn cancel_job(
        &mut self,
        id: &JobId,
        cancel: &CancelJob,
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        if let Some(r) = &cancel.reason_code
            && (r.is_empty()
                || r.len() > MAX_REASON_CODE
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(Error::request(
                "reasonCode must match [\\p{Upper}\\p{Digit}_]+ (at most 128)",
            ));
        }
        if let Some(c) = &cancel.comment
            && c.chars().count() > MAX_COMMENT_CHARS
        {
            return Err(Error::request(format!(
                "comment is longer than {MAX_COMMENT_CHARS} characters"
            )));
        }
        let mut job = self.describe_job(id)?;
        let allowed = match job.status {
            JobStatus::InProgress | JobStatus::Scheduled => true,
            // A canceled job may be canceled again with force, to cancel IN_PROGRESS executions.
            JobStatus::Canceled => cancel.force && !job.force_canceled,
            JobStatus::Completed | JobStatus::DeletionInProgress => false,
        };
        if !allowed {
            return Err(Error::InvalidStateTransition {
                from: job.status.as_str(),
                to: JobStatus::Canceled.as_str(),
            });
        }
        job.status = JobStatus::Canceled;
        job.force_canceled = cancel.force;
        job.comment.clone_from(&cancel.comment);
        job.reason_code.clone_from(&cancel.reason_code);
        job.last_updated_at = now;
        job.completed_at = Some(now);
        self.store.put_job(&job)?;
        let _ = self.pacer.cancel(id);
        self.open.remove(id);
        self.let_go(id);
        let mut out = Vec::new();
        for e in self.store.executions_of_job(id)? {
            let cancelable = e.status == ExecutionStatus::Queued
                || (cancel.force && e.status == ExecutionStatus::InProgress);
            if cancelable {
                let next = e.apply_service(ExecutionStatus::Canceled, cancel.force, now)?;
                out.extend(self.write_thing(&e.thing_name, &[next], now)?);
            }
        }
        Ok(out)
    }

    /// CancelJobExecution: the execution becomes CANCELED (IN_PROGRESS only with `force`),
    /// with `status_details` replacing its statusDetails when given.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::VersionConflict`], [`Error::InvalidRequest`],
    /// [`Error::InvalidStateTransition`], [`Error::InternalError`].
    pub fn cancel_execution(
        &mut self,
        job: &JobId,
        thing: &str,
        force: bool,
        expected_version: Option<u64>,
        status_details: Option<BTreeMap<String, String>>,
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        let e = self.describe_execution(job, thing)?;
        if let Some(expected) = expected_version
            && expected != e.version_number
        {
            return Err(Error::VersionConflict {
                expected,
                current: e.version_number,
            });
        }
        if let Some(d) = &status_details {
            check_status_details(d)?;
        }
        let mut next = e.apply_service(ExecutionStatus::Canceled, force, now)?;
        if let Some(d) = status_details {
            next.status_details = d;
        }
        self.write_thing(thing, &[next], now)
    }

    /// DeleteJobExecution: removes the execution `execution_number` of `job` on `thing`; a
    /// non-terminal one only with `force`.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`] (no such execution or number),
    /// [`Error::InvalidStateTransition`] (not terminal, no force), [`Error::InternalError`].
    pub fn delete_execution(
        &mut self,
        job: &JobId,
        thing: &str,
        execution_number: u64,
        force: bool,
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        let e = self.describe_execution(job, thing)?;
        if e.execution_number != execution_number {
            return Err(Error::ResourceNotFound {
                detail: format!(
                    "Job execution {execution_number} of job {job} on thing {thing} not found"
                ),
            });
        }
        if !e.status.is_terminal() && !force {
            return Err(Error::InvalidStateTransition {
                from: e.status.as_str(),
                to: "DELETED",
            });
        }
        let before = self.thing_jobs(thing)?;
        self.store.delete_execution(thing, job)?;
        if !e.status.is_terminal()
            && let Some(n) = self.open.get_mut(job)
        {
            *n = n.saturating_sub(1);
        }
        self.deadlines.stop(job, &thing.to_owned());
        let after = self.thing_jobs(thing)?;
        let out = notifications(thing, &before, &after, now, &self.limits);
        self.complete_if_done(job, now)?;
        Ok(out)
    }

    /// A timer fired: the IN_PROGRESS execution of `job` on `thing` becomes TIMED_OUT if its
    /// `timeout_at` is at or before `now` (J-16). Returns `Ok(None)` when it is not due (no
    /// timer, not yet, or no longer IN_PROGRESS). [`Jobs::tick`] calls it for every deadline
    /// that passed.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InternalError`].
    pub fn time_out_execution(
        &mut self,
        job: &JobId,
        thing: &str,
        now: u64,
    ) -> Result<Option<Vec<OutMessage>>, Error> {
        let e = match self.describe_execution(job, thing) {
            Ok(e) => e,
            Err(Error::ResourceNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let due = e.status == ExecutionStatus::InProgress && e.timeout_at.is_some_and(|t| t <= now);
        if !due {
            return Ok(None);
        }
        let next = e.apply_service(ExecutionStatus::TimedOut, false, now)?;
        self.write_thing(thing, &[next], now).map(Some)
    }

    /// The thing left a target group of a continuous job: its QUEUED execution becomes REMOVED
    /// (J-06).
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InvalidStateTransition`] (not QUEUED),
    /// [`Error::InternalError`].
    pub fn remove_execution(
        &mut self,
        job: &JobId,
        thing: &str,
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        let e = self.describe_execution(job, thing)?;
        let next = e.apply_service(ExecutionStatus::Removed, false, now)?;
        self.write_thing(thing, &[next], now)
    }

    /// DeleteJob: only a COMPLETED or CANCELED job unless `force`; the job, its executions
    /// and its rollout list are removed together. Returns the notifications for things that
    /// had it pending.
    ///
    /// # Errors
    ///
    /// [`Error::ResourceNotFound`], [`Error::InvalidStateTransition`], [`Error::InternalError`].
    pub fn delete_job(
        &mut self,
        id: &JobId,
        force: bool,
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        let job = self.describe_job(id)?;
        if !force && !matches!(job.status, JobStatus::Completed | JobStatus::Canceled) {
            return Err(Error::InvalidStateTransition {
                from: job.status.as_str(),
                to: JobStatus::DeletionInProgress.as_str(),
            });
        }
        let things: Vec<String> = self
            .store
            .executions_of_job(id)?
            .into_iter()
            .map(|e| e.thing_name)
            .collect();
        let mut befores = Vec::new();
        for t in &things {
            befores.push(self.thing_jobs(t)?);
        }
        self.store.delete_job(id)?;
        self.pacer.remove_job(id);
        self.open.remove(id);
        self.let_go(id);
        for t in &things {
            self.deadlines.stop(id, t);
        }
        let mut out = Vec::new();
        for (t, before) in things.iter().zip(befores) {
            let after = self.thing_jobs(t)?;
            out.extend(notifications(t, &before, &after, now, &self.limits));
        }
        Ok(out)
    }

    /// A snapshot job whose executions are all terminal and whose rollout has notified every
    /// target becomes COMPLETED (B.1). Uses the in-memory count of open executions; a job not
    /// counted yet (a store opened with [`Jobs::new`]) is counted once.
    fn complete_if_done(&mut self, id: &JobId, now: u64) -> Result<(), Error> {
        // Only the server pacing a job knows whether its rollout has things left to notify.
        if !self.paces(id) {
            return Ok(());
        }
        // The common case on the device path: executions still open, nothing to read.
        if self.open.get(id).is_some_and(|n| *n > 0) {
            return Ok(());
        }
        let Some(mut job) = self.store.get_job(id)? else {
            return Ok(());
        };
        if job.status != JobStatus::InProgress || job.target_selection != TargetSelection::Snapshot
        {
            return Ok(());
        }
        let open = match self.open.get(id) {
            // Alone, the count is exact. Shared, another server may have opened an execution
            // (a retry) since the last renewal: the store decides.
            Some(n) if !self.shared() => *n,
            _ => {
                let n = self
                    .store
                    .executions_of_job(id)?
                    .iter()
                    .filter(|e| !e.status.is_terminal())
                    .count();
                let n = u64::try_from(n).unwrap_or(u64::MAX);
                self.open.insert(id.clone(), n);
                n
            }
        };
        if open == 0 && self.pacer.queued(id).unwrap_or(0) == 0 {
            job.status = JobStatus::Completed;
            job.completed_at = Some(now);
            job.last_updated_at = now;
            self.store.put_job(&job)?;
            self.pacer.remove_job(id);
            self.open.remove(id);
            self.let_go(id);
        }
        Ok(())
    }

    /// Handles a device PUBLISH to `topic`: `None` when it is not a jobs request topic,
    /// otherwise the messages to publish, in order. Changed executions are stored (durably)
    /// before this returns; if the store fails the answer is one InternalError rejection.
    pub fn request(&mut self, topic: &str, payload: &[u8], now: u64) -> Option<Vec<OutMessage>> {
        let (thing, request) = parse_request_topic(topic)?;
        let named = match &request {
            device::Request::Update(id) | device::Request::Describe(device::JobRef::Id(id)) => {
                Some(id)
            }
            _ => None,
        };
        let current = match self.thing_jobs_with(thing, named) {
            Ok(c) => c,
            Err(e) => return Some(vec![device::internal_error(topic, &e.to_string(), now)]),
        };
        let mut outcome = device::handle(thing, &current, &request, payload, now, &self.limits);
        let mut followups = Followups::default();
        for w in &outcome.writes {
            let before = current
                .iter()
                .find(|c| c.execution.job_id == w.job_id)
                .map(|c| c.execution.clone());
            if let Err(e) = self.put_execution(before.as_ref(), w, now, &mut followups) {
                return Some(vec![device::internal_error(topic, &e.to_string(), now)]);
            }
        }
        // The device's change is stored and answered; a store failure while applying what it
        // set in motion (a retry or an abort) leaves that undone. Completion is decided after
        // the retries are queued: a retried execution keeps its job open.
        if let Ok(more) = self.follow_up(followups, now) {
            outcome.publishes.extend(more);
        }
        for w in &outcome.writes {
            if let Err(e) = self.complete_if_done(&w.job_id, now) {
                return Some(vec![device::internal_error(topic, &e.to_string(), now)]);
            }
        }
        Some(outcome.publishes)
    }
}
