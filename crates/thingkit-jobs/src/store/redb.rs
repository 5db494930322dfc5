//! [`RedbJobStore`]: jobs and executions in one [redb](https://docs.rs/redb) file.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::Error;
use crate::execution::JobExecution;
use crate::job::{Job, JobId};
use crate::store::JobStore;

/// job id → the job as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("thingkit-jobs-job-v1");
/// (thing, job id) → the execution as JSON.
const EXECUTIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("thingkit-jobs-execution-v1");
/// (job id, thing) → nothing: the index behind `executions_of_job`.
const BY_JOB: TableDefinition<(&str, &str), ()> = TableDefinition::new("thingkit-jobs-by-job-v1");
/// job id → the things its rollout still had to notify at creation, as JSON.
const ROLLOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("thingkit-jobs-rollout-v1");

fn backend<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::store(format!("store {operation}: {}", e.into()))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::store(format!("corrupt {what}: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::store(format!("encode: {e}")))
}

/// A [`JobStore`] in one redb database file, one table per kind of record. Each write is one
/// transaction committed with [`Durability::Immediate`]: when it returns `Ok` it is on stable
/// storage.
pub struct RedbJobStore {
    db: Database,
}

impl std::fmt::Debug for RedbJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJobStore").finish_non_exhaustive()
    }
}

impl RedbJobStore {
    /// Opens the database at `path`, creating it and its tables if needed.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when redb cannot open or create it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let db = Database::create(path).map_err(backend("open"))?;
        let txn = db.begin_write().map_err(backend("open"))?;
        txn.open_table(JOBS).map_err(backend("open"))?;
        txn.open_table(EXECUTIONS).map_err(backend("open"))?;
        txn.open_table(BY_JOB).map_err(backend("open"))?;
        txn.open_table(ROLLOUTS).map_err(backend("open"))?;
        txn.commit().map_err(backend("open"))?;
        Ok(RedbJobStore { db })
    }

    fn write(
        &mut self,
        operation: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut txn = self.db.begin_write().map_err(backend(operation))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend(operation))?;
        f(&txn)?;
        txn.commit().map_err(backend(operation))
    }
}

impl JobStore for RedbJobStore {
    fn get_job(&self, id: &JobId) -> Result<Option<Job>, Error> {
        let txn = self.db.begin_read().map_err(backend("get"))?;
        let table = txn.open_table(JOBS).map_err(backend("get"))?;
        match table.get(id.as_str()).map_err(backend("get"))? {
            Some(v) => Ok(Some(decode("job", v.value())?)),
            None => Ok(None),
        }
    }

    fn put_job(&mut self, job: &Job) -> Result<(), Error> {
        let bytes = encode(job)?;
        self.write("put", |txn| {
            let mut t = txn.open_table(JOBS).map_err(backend("put"))?;
            t.insert(job.job_id.as_str(), bytes.as_slice())
                .map_err(backend("put"))?;
            Ok(())
        })
    }

    fn delete_job(&mut self, id: &JobId) -> Result<(), Error> {
        self.write("delete", |txn| {
            let mut jobs = txn.open_table(JOBS).map_err(backend("delete"))?;
            jobs.remove(id.as_str()).map_err(backend("delete"))?;
            let mut rollouts = txn.open_table(ROLLOUTS).map_err(backend("delete"))?;
            rollouts.remove(id.as_str()).map_err(backend("delete"))?;
            let mut index = txn.open_table(BY_JOB).map_err(backend("delete"))?;
            let mut things = Vec::new();
            for entry in index
                .range((id.as_str(), "")..)
                .map_err(backend("delete"))?
            {
                let (k, _) = entry.map_err(backend("delete"))?;
                let (j, t) = k.value();
                if j != id.as_str() {
                    break;
                }
                things.push(t.to_owned());
            }
            let mut executions = txn.open_table(EXECUTIONS).map_err(backend("delete"))?;
            for t in &things {
                index
                    .remove((id.as_str(), t.as_str()))
                    .map_err(backend("delete"))?;
                executions
                    .remove((t.as_str(), id.as_str()))
                    .map_err(backend("delete"))?;
            }
            Ok(())
        })
    }

    fn list_jobs(&self) -> Result<Vec<Job>, Error> {
        let txn = self.db.begin_read().map_err(backend("list"))?;
        let table = txn.open_table(JOBS).map_err(backend("list"))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(backend("list"))? {
            let (_, v) = entry.map_err(backend("list"))?;
            out.push(decode("job", v.value())?);
        }
        Ok(out)
    }

    fn get_execution(&self, thing: &str, job: &JobId) -> Result<Option<JobExecution>, Error> {
        let txn = self.db.begin_read().map_err(backend("get"))?;
        let table = txn.open_table(EXECUTIONS).map_err(backend("get"))?;
        match table.get((thing, job.as_str())).map_err(backend("get"))? {
            Some(v) => Ok(Some(decode("execution", v.value())?)),
            None => Ok(None),
        }
    }

    fn put_execution(&mut self, e: &JobExecution) -> Result<(), Error> {
        let bytes = encode(e)?;
        self.write("put", |txn| {
            let mut t = txn.open_table(EXECUTIONS).map_err(backend("put"))?;
            t.insert((e.thing_name.as_str(), e.job_id.as_str()), bytes.as_slice())
                .map_err(backend("put"))?;
            let mut index = txn.open_table(BY_JOB).map_err(backend("put"))?;
            index
                .insert((e.job_id.as_str(), e.thing_name.as_str()), ())
                .map_err(backend("put"))?;
            Ok(())
        })
    }

    fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, Error> {
        let txn = self.db.begin_read().map_err(backend("list"))?;
        let table = txn.open_table(EXECUTIONS).map_err(backend("list"))?;
        let mut out = Vec::new();
        for entry in table.range((thing, "")..).map_err(backend("list"))? {
            let (k, v) = entry.map_err(backend("list"))?;
            if k.value().0 != thing {
                break;
            }
            out.push(decode("execution", v.value())?);
        }
        Ok(out)
    }

    fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, Error> {
        let txn = self.db.begin_read().map_err(backend("list"))?;
        let index = txn.open_table(BY_JOB).map_err(backend("list"))?;
        let table = txn.open_table(EXECUTIONS).map_err(backend("list"))?;
        let mut out = Vec::new();
        for entry in index.range((job.as_str(), "")..).map_err(backend("list"))? {
            let (k, _) = entry.map_err(backend("list"))?;
            let (j, t) = k.value();
            if j != job.as_str() {
                break;
            }
            if let Some(v) = table.get((t, j)).map_err(backend("list"))? {
                out.push(decode("execution", v.value())?);
            }
        }
        Ok(out)
    }

    fn delete_execution(&mut self, thing: &str, job: &JobId) -> Result<(), Error> {
        self.write("delete", |txn| {
            let mut executions = txn.open_table(EXECUTIONS).map_err(backend("delete"))?;
            executions
                .remove((thing, job.as_str()))
                .map_err(backend("delete"))?;
            let mut index = txn.open_table(BY_JOB).map_err(backend("delete"))?;
            index
                .remove((job.as_str(), thing))
                .map_err(backend("delete"))?;
            Ok(())
        })
    }

    fn put_rollout(&mut self, job: &JobId, things: &[String]) -> Result<(), Error> {
        let bytes = encode(&things)?;
        self.write("put", |txn| {
            let mut t = txn.open_table(ROLLOUTS).map_err(backend("put"))?;
            if things.is_empty() {
                t.remove(job.as_str()).map_err(backend("put"))?;
            } else {
                t.insert(job.as_str(), bytes.as_slice())
                    .map_err(backend("put"))?;
            }
            Ok(())
        })
    }

    fn rollout(&self, job: &JobId) -> Result<Vec<String>, Error> {
        let txn = self.db.begin_read().map_err(backend("get"))?;
        let table = txn.open_table(ROLLOUTS).map_err(backend("get"))?;
        match table.get(job.as_str()).map_err(backend("get"))? {
            Some(v) => decode("rollout", v.value()),
            None => Ok(Vec::new()),
        }
    }
}
