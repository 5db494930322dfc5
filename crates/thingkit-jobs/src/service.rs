//! [`Jobs`]: the driver a broker and the control plane use — read the store, decide with the
//! pure functions of this crate, write (durably) before anything is published.

use std::collections::BTreeSet;

use crate::device::{self, Limits, OutMessage, ThingJob, notifications, parse_request_topic};
use crate::error::Error;
use crate::execution::{ExecutionStatus, JobExecution, check_status_details};
use crate::job::{Job, JobId, JobStatus, MAX_COMMENT_CHARS, MAX_REASON_CODE, TargetSelection};
use crate::store::JobStore;

/// A store and the device-request limits, answering device requests and control-plane calls.
#[derive(Debug)]
pub struct Jobs<S: JobStore> {
    store: S,
    limits: Limits,
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
    /// Jobs kept in `store`, device requests checked against `limits`.
    pub fn new(store: S, limits: Limits) -> Self {
        Jobs { store, limits }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, giving up the driver.
    pub fn into_store(self) -> S {
        self.store
    }

    fn thing_jobs(&self, thing: &str) -> Result<Vec<ThingJob>, Error> {
        let mut out = Vec::new();
        for execution in self.store.executions_of_thing(thing)? {
            if let Some(job) = self.store.get_job(&execution.job_id)? {
                out.push(ThingJob {
                    execution,
                    document: job.document,
                });
            }
        }
        Ok(out)
    }

    /// Writes `changed` executions of `thing` and returns the notifications the change causes.
    fn write_thing(
        &mut self,
        thing: &str,
        changed: &[JobExecution],
        now: u64,
    ) -> Result<Vec<OutMessage>, Error> {
        let before = self.thing_jobs(thing)?;
        for e in changed {
            self.store.put_execution(e)?;
        }
        let after = self.thing_jobs(thing)?;
        for e in changed {
            self.complete_if_done(&e.job_id, now)?;
        }
        Ok(notifications(thing, &before, &after, now, &self.limits))
    }

    /// CreateJob: validates `job`, stores it IN_PROGRESS, and queues one execution (number 1,
    /// version 1) on each thing of `things` — the targets already resolved to thing names by the
    /// caller. Returns the `/notify` and `/notify-next` messages for those things.
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
        job.status = JobStatus::InProgress;
        job.created_at = now;
        job.last_updated_at = now;
        job.completed_at = None;
        self.store.put_job(&job)?;
        let timeout = job.timeout.map(|t| t.in_progress_timeout_in_minutes);
        let mut out = Vec::new();
        let unique: BTreeSet<&String> = things.iter().collect();
        for thing in unique {
            let e = JobExecution::queued(job.job_id.clone(), thing.clone(), 1, timeout, now);
            out.extend(self.write_thing(thing, &[e], now)?);
        }
        Ok(out)
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

    /// CancelJob: the job becomes CANCELED with `comment` and `reasonCode`; QUEUED executions
    /// are canceled, IN_PROGRESS ones only with `force` (J-06, J-14).
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
        status_details: Option<std::collections::BTreeMap<String, String>>,
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

    /// A timer fired: the IN_PROGRESS execution of `job` on `thing` becomes TIMED_OUT if its
    /// `timeout_at` is at or before `now` (J-16). Returns `Ok(None)` when it is not due (no
    /// timer, not yet, or no longer IN_PROGRESS); the timer arithmetic itself is the caller's.
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
        let e = self.describe_execution(job, thing)?;
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

    /// DeleteJob: only a COMPLETED or CANCELED job unless `force`; the job and its executions
    /// are removed together. Returns the notifications for things that had it pending.
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
        let mut out = Vec::new();
        for (t, before) in things.iter().zip(befores) {
            let after = self.thing_jobs(t)?;
            out.extend(notifications(t, &before, &after, now, &self.limits));
        }
        Ok(out)
    }

    /// A snapshot job whose executions are all terminal becomes COMPLETED (B.1).
    fn complete_if_done(&mut self, id: &JobId, now: u64) -> Result<(), Error> {
        let Some(mut job) = self.store.get_job(id)? else {
            return Ok(());
        };
        if job.status != JobStatus::InProgress || job.target_selection != TargetSelection::Snapshot
        {
            return Ok(());
        }
        let executions = self.store.executions_of_job(id)?;
        if executions.iter().all(|e| e.status.is_terminal()) {
            job.status = JobStatus::Completed;
            job.completed_at = Some(now);
            job.last_updated_at = now;
            self.store.put_job(&job)?;
        }
        Ok(())
    }

    /// Handles a device PUBLISH to `topic`: `None` when it is not a jobs request topic,
    /// otherwise the messages to publish, in order. Changed executions are stored (durably)
    /// before this returns; if the store fails the answer is one InternalError rejection.
    pub fn request(&mut self, topic: &str, payload: &[u8], now: u64) -> Option<Vec<OutMessage>> {
        let (thing, request) = parse_request_topic(topic)?;
        let current = match self.thing_jobs(thing) {
            Ok(c) => c,
            Err(e) => return Some(vec![device::internal_error(topic, &e.to_string(), now)]),
        };
        let outcome = device::handle(thing, &current, &request, payload, now, &self.limits);
        for w in &outcome.writes {
            let stored = self
                .store
                .put_execution(w)
                .and_then(|()| self.complete_if_done(&w.job_id, now));
            if let Err(e) = stored {
                return Some(vec![device::internal_error(topic, &e.to_string(), now)]);
            }
        }
        Some(outcome.publishes)
    }
}
