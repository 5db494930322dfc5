//! Durable storage of jobs and executions behind [`JobStore`]: [`MemoryJobStore`] for tests
//! and embedding, [`RedbJobStore`] (feature `redb`) for the server.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::execution::JobExecution;
use crate::job::{Job, JobId};

#[cfg(feature = "test-suite")]
pub mod conformance;
#[cfg(all(test, not(feature = "test-suite")))]
pub(crate) mod conformance;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "redb")]
pub use self::redb::RedbJobStore;

/// Where jobs and executions are kept. Every implementation passes the same tests
/// (`conformance::run` and `conformance::reopen`, cargo feature `test-suite`). Failures are [`Error::InternalError`]. Writes are durable when they
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

    /// Stores `execution` only if (its thing, its job) has no execution yet; `Ok(true)` when it
    /// was stored, `Ok(false)` when one was there (which is kept). A rollout creates executions
    /// through this, so two servers pacing the same job at once (a lease hand-over) never
    /// create two executions of one job on one thing. The default reads, then writes: right for
    /// a store only one process writes; a shared store must make it one atomic step.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`]; then nothing was stored.
    fn create_execution(&mut self, execution: &JobExecution) -> Result<bool, Error> {
        if self
            .get_execution(&execution.thing_name, &execution.job_id)?
            .is_some()
        {
            return Ok(false);
        }
        self.put_execution(execution)?;
        Ok(true)
    }

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

    /// Removes the execution of `job` on `thing` (DeleteJobExecution); nothing when absent.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`]; then nothing was removed.
    fn delete_execution(&mut self, thing: &str, job: &JobId) -> Result<(), Error>;

    /// Stores the things a rolled-out job still has to notify, in rollout order, replacing
    /// what was stored for it (an empty list removes the entry). Written once when the job is
    /// created and read back only when the service restarts: the queue itself lives in memory.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`]; then nothing was stored.
    fn put_rollout(&mut self, job: &JobId, things: &[String]) -> Result<(), Error>;

    /// The rollout list stored by [`JobStore::put_rollout`] (empty when none).
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`].
    fn rollout(&self, job: &JobId) -> Result<Vec<String>, Error>;
}

impl<T: JobStore + ?Sized> JobStore for Box<T> {
    fn get_job(&self, id: &JobId) -> Result<Option<Job>, Error> {
        (**self).get_job(id)
    }
    fn put_job(&mut self, job: &Job) -> Result<(), Error> {
        (**self).put_job(job)
    }
    fn delete_job(&mut self, id: &JobId) -> Result<(), Error> {
        (**self).delete_job(id)
    }
    fn list_jobs(&self) -> Result<Vec<Job>, Error> {
        (**self).list_jobs()
    }
    fn get_execution(&self, thing: &str, job: &JobId) -> Result<Option<JobExecution>, Error> {
        (**self).get_execution(thing, job)
    }
    fn put_execution(&mut self, execution: &JobExecution) -> Result<(), Error> {
        (**self).put_execution(execution)
    }
    fn create_execution(&mut self, execution: &JobExecution) -> Result<bool, Error> {
        (**self).create_execution(execution)
    }
    fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, Error> {
        (**self).executions_of_thing(thing)
    }
    fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, Error> {
        (**self).executions_of_job(job)
    }
    fn delete_execution(&mut self, thing: &str, job: &JobId) -> Result<(), Error> {
        (**self).delete_execution(thing, job)
    }
    fn put_rollout(&mut self, job: &JobId, things: &[String]) -> Result<(), Error> {
        (**self).put_rollout(job, things)
    }
    fn rollout(&self, job: &JobId) -> Result<Vec<String>, Error> {
        (**self).rollout(job)
    }
}

/// Jobs and executions in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryJobStore {
    jobs: BTreeMap<JobId, Job>,
    executions: BTreeMap<(String, JobId), JobExecution>,
    by_job: BTreeSet<(JobId, String)>,
    rollouts: BTreeMap<JobId, Vec<String>>,
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
        self.rollouts.remove(id);
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

    fn delete_execution(&mut self, thing: &str, job: &JobId) -> Result<(), Error> {
        self.executions.remove(&(thing.to_owned(), job.clone()));
        self.by_job.remove(&(job.clone(), thing.to_owned()));
        Ok(())
    }

    fn put_rollout(&mut self, job: &JobId, things: &[String]) -> Result<(), Error> {
        if things.is_empty() {
            self.rollouts.remove(job);
        } else {
            self.rollouts.insert(job.clone(), things.to_vec());
        }
        Ok(())
    }

    fn rollout(&self, job: &JobId) -> Result<Vec<String>, Error> {
        Ok(self.rollouts.get(job).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        conformance::run(|| Box::new(MemoryJobStore::new()));
    }

    #[cfg(feature = "redb")]
    #[test]
    fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        conformance::run(|| {
            n += 1;
            Box::new(RedbJobStore::open(dir.path().join(format!("{n}.redb"))).expect("open"))
        });
        let path = dir.path().join("reopened.redb");
        conformance::reopen(|| Box::new(RedbJobStore::open(&path).expect("open")));
    }
}
