//! Durable storage of jobs and executions behind [`JobStore`]: [`MemoryJobStore`] for tests
//! and embedding, [`RedbJobStore`] (feature `redb`) for the server.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::execution::JobExecution;
use crate::job::{Job, JobId};

#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "redb")]
pub use self::redb::RedbJobStore;

/// Where jobs and executions are kept. Every implementation passes the same tests
/// (`tests/store.rs`). Failures are [`Error::InternalError`]. Writes are durable when they
/// return `Ok`.
pub trait JobStore: Send {
    /// The job `id`, if it exists.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when the backend fails or a record does not decode.
    fn get_job(&self, id: &JobId) -> Result<Option<Job>, Error>;

    /// Stores `job` (insert or replace).
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`]; then nothing was stored.
    fn put_job(&mut self, job: &Job) -> Result<(), Error>;

    /// Removes the job `id` and all its executions, in one step.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`]; then nothing was removed.
    fn delete_job(&mut self, id: &JobId) -> Result<(), Error>;

    /// Every job, by id.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    fn list_jobs(&self) -> Result<Vec<Job>, Error>;

    /// The execution of `job` on `thing`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    fn get_execution(&self, thing: &str, job: &JobId) -> Result<Option<JobExecution>, Error>;

    /// Stores `execution` under (its thing, its job).
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`]; then nothing was stored.
    fn put_execution(&mut self, execution: &JobExecution) -> Result<(), Error>;

    /// `thing`'s executions by job id — a range read of that thing's records, never a scan of
    /// other things'.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, Error>;

    /// `job`'s executions by thing name (through an index keyed by job).
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, Error>;
}

/// Jobs and executions in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryJobStore {
    jobs: BTreeMap<JobId, Job>,
    executions: BTreeMap<(String, JobId), JobExecution>,
    by_job: BTreeSet<(JobId, String)>,
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl JobStore for MemoryJobStore {
    fn get_job(&self, id: &JobId) -> Result<Option<Job>, Error> {
        Ok(self.jobs.get(id).cloned())
    }

    fn put_job(&mut self, job: &Job) -> Result<(), Error> {
        self.jobs.insert(job.job_id.clone(), job.clone());
        Ok(())
    }

    fn delete_job(&mut self, id: &JobId) -> Result<(), Error> {
        self.jobs.remove(id);
        let things: Vec<String> = self
            .by_job
            .range((id.clone(), String::new())..)
            .take_while(|(j, _)| j == id)
            .map(|(_, t)| t.clone())
            .collect();
        for t in things {
            self.by_job.remove(&(id.clone(), t.clone()));
            self.executions.remove(&(t, id.clone()));
        }
        Ok(())
    }

    fn list_jobs(&self) -> Result<Vec<Job>, Error> {
        Ok(self.jobs.values().cloned().collect())
    }

    fn get_execution(&self, thing: &str, job: &JobId) -> Result<Option<JobExecution>, Error> {
        Ok(self
            .executions
            .get(&(thing.to_owned(), job.clone()))
            .cloned())
    }

    fn put_execution(&mut self, e: &JobExecution) -> Result<(), Error> {
        self.executions
            .insert((e.thing_name.clone(), e.job_id.clone()), e.clone());
        self.by_job.insert((e.job_id.clone(), e.thing_name.clone()));
        Ok(())
    }

    fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, Error> {
        Ok(self
            .executions
            .range((thing.to_owned(), JobId::min())..)
            .take_while(|((t, _), _)| t == thing)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, Error> {
        Ok(self
            .by_job
            .range((job.clone(), String::new())..)
            .take_while(|(j, _)| j == job)
            .filter_map(|(j, t)| self.executions.get(&(t.clone(), j.clone())).cloned())
            .collect())
    }
}
