//! [`PgJobStore`]: jobs, executions and rollout lists in PostgreSQL tables.

use std::sync::Arc;

use thingkit_jobs::{Job, JobExecution, JobId, JobStore};

use super::config::PostgresConfig;
use super::connection::{Connection, Failure};
use super::migration::{self, Migrations, quote};
use crate::error::Error;

/// The jobs component's migrations; `PgJobLease` opens them too (step 2 is its table).
pub(super) const MIGRATIONS: Migrations = Migrations {
    component: "jobs",
    steps: &[
        "CREATE TABLE {s}.job (
        id text COLLATE \"C\" PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE {s}.job_execution (
        thing text COLLATE \"C\" NOT NULL,
        job_id text COLLATE \"C\" NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (thing, job_id)
    );
    CREATE INDEX job_execution_by_job ON {s}.job_execution (job_id, thing);
    CREATE TABLE {s}.job_rollout (
        job_id text COLLATE \"C\" PRIMARY KEY,
        things bytea NOT NULL
    )",
        "CREATE TABLE {s}.job_lease (
        job_id text COLLATE \"C\" PRIMARY KEY,
        owner text NOT NULL,
        expires_at bigint NOT NULL
    )",
    ],
};

struct Sql {
    get_job: String,
    put_job: String,
    delete_job: [String; 4],
    list_jobs: String,
    get_execution: String,
    put_execution: String,
    create_execution: String,
    of_thing: String,
    of_job: String,
    delete_execution: String,
    put_rollout: String,
    delete_rollout: String,
    rollout: String,
    schema: String,
}

/// A [`JobStore`] on PostgreSQL: tables `job`, `job_execution` (keyed by thing and job id,
/// indexed by job id and thing), `job_rollout` and `job_lease` ([`PgJobLease`](crate::PgJobLease)), records as JSON (the same encoding as the
/// embedded redb store).
///
/// Every write is one transaction, durable when it returns `Ok` (`synchronous_commit = on`);
/// [`delete_job`](JobStore::delete_job) removes the job, its executions and its rollout list in
/// one, with its lease. [`create_execution`](JobStore::create_execution) is one conditional
/// insert, so of servers racing to create an execution one does. Ids and thing names compare
/// by their bytes (`COLLATE "C"`), so listings keep the embedded store's order.
pub struct PgJobStore {
    connection: Connection,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for PgJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJobStore")
            .field("schema", &self.sql.schema)
            .finish_non_exhaustive()
    }
}

impl PgJobStore {
    /// Connects, creates the schema and applies the job tables' migrations if needed.
    ///
    /// # Errors
    ///
    /// As [`PgRegistryStore::open`](crate::PgRegistryStore::open).
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let q = quote(&schema);
        let sql = Arc::new(Sql {
            get_job: format!("SELECT value FROM {q}.job WHERE id = $1"),
            put_job: format!(
                "INSERT INTO {q}.job (id, value) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete_job: [
                format!("DELETE FROM {q}.job_execution WHERE job_id = $1"),
                format!("DELETE FROM {q}.job_rollout WHERE job_id = $1"),
                format!("DELETE FROM {q}.job_lease WHERE job_id = $1"),
                format!("DELETE FROM {q}.job WHERE id = $1"),
            ],
            list_jobs: format!("SELECT value FROM {q}.job ORDER BY id"),
            get_execution: format!(
                "SELECT value FROM {q}.job_execution WHERE thing = $1 AND job_id = $2"
            ),
            put_execution: format!(
                "INSERT INTO {q}.job_execution (thing, job_id, value) VALUES ($1, $2, $3)
                 ON CONFLICT (thing, job_id) DO UPDATE SET value = EXCLUDED.value"
            ),
            create_execution: format!(
                "INSERT INTO {q}.job_execution (thing, job_id, value) VALUES ($1, $2, $3)
                 ON CONFLICT (thing, job_id) DO NOTHING"
            ),
            of_thing: format!(
                "SELECT value FROM {q}.job_execution WHERE thing = $1 ORDER BY job_id"
            ),
            of_job: format!("SELECT value FROM {q}.job_execution WHERE job_id = $1 ORDER BY thing"),
            delete_execution: format!(
                "DELETE FROM {q}.job_execution WHERE thing = $1 AND job_id = $2"
            ),
            put_rollout: format!(
                "INSERT INTO {q}.job_rollout (job_id, things) VALUES ($1, $2)
                 ON CONFLICT (job_id) DO UPDATE SET things = EXCLUDED.things"
            ),
            delete_rollout: format!("DELETE FROM {q}.job_rollout WHERE job_id = $1"),
            rollout: format!("SELECT things FROM {q}.job_rollout WHERE job_id = $1"),
            schema: schema.clone(),
        });
        let connection = Connection::open(
            config,
            "thingkit-pg-jobs",
            Box::new(move |client| migration::apply(client, &schema, &MIGRATIONS)),
        )?;
        Ok(PgJobStore { connection, sql })
    }

    /// Runs `f` and maps our error into the job service's.
    fn call<R: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl Fn(&mut ::postgres::Client, &Sql) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, thingkit_jobs::Error> {
        let sql = Arc::clone(&self.sql);
        self.connection
            .call(operation, move |client| f(client, &sql))
            .map_err(|e| thingkit_jobs::Error::InternalError {
                detail: e.to_string(),
            })
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, thingkit_jobs::Error> {
    serde_json::to_vec(value).map_err(|e| thingkit_jobs::Error::InternalError {
        detail: format!("encode: {e}"),
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::Other(Error::Corrupt {
            what: what.to_owned(),
            detail: e.to_string(),
        })
    })
}

fn values<T: serde::de::DeserializeOwned>(
    what: &str,
    rows: &[::postgres::Row],
) -> Result<Vec<T>, Failure> {
    rows.iter()
        .map(|row| decode(what, row.try_get::<_, &[u8]>(0)?))
        .collect()
}

impl JobStore for PgJobStore {
    fn get_job(&self, id: &JobId) -> Result<Option<Job>, thingkit_jobs::Error> {
        let id = id.as_str().to_owned();
        self.call("get", move |client, sql| {
            match client.query_opt(&sql.get_job, &[&id])? {
                Some(row) => Ok(Some(decode("job", row.try_get::<_, &[u8]>(0)?)?)),
                None => Ok(None),
            }
        })
    }

    fn put_job(&mut self, job: &Job) -> Result<(), thingkit_jobs::Error> {
        let id = job.job_id.as_str().to_owned();
        let bytes = encode(job)?;
        self.call("put", move |client, sql| {
            client.execute(&sql.put_job, &[&id, &bytes])?;
            Ok(())
        })
    }

    fn delete_job(&mut self, id: &JobId) -> Result<(), thingkit_jobs::Error> {
        let id = id.as_str().to_owned();
        self.call("delete", move |client, sql| {
            let mut tx = client.transaction()?;
            for statement in &sql.delete_job {
                tx.execute(statement, &[&id])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn list_jobs(&self) -> Result<Vec<Job>, thingkit_jobs::Error> {
        self.call("list", move |client, sql| {
            values("job", &client.query(&sql.list_jobs, &[])?)
        })
    }

    fn get_execution(
        &self,
        thing: &str,
        job: &JobId,
    ) -> Result<Option<JobExecution>, thingkit_jobs::Error> {
        let thing = thing.to_owned();
        let job = job.as_str().to_owned();
        self.call("get", move |client, sql| {
            match client.query_opt(&sql.get_execution, &[&thing, &job])? {
                Some(row) => Ok(Some(decode("execution", row.try_get::<_, &[u8]>(0)?)?)),
                None => Ok(None),
            }
        })
    }

    fn put_execution(&mut self, e: &JobExecution) -> Result<(), thingkit_jobs::Error> {
        let thing = e.thing_name.clone();
        let job = e.job_id.as_str().to_owned();
        let bytes = encode(e)?;
        self.call("put", move |client, sql| {
            client.execute(&sql.put_execution, &[&thing, &job, &bytes])?;
            Ok(())
        })
    }

    /// One `INSERT ... ON CONFLICT DO NOTHING`: of two servers racing, one inserts. When
    /// nothing was inserted the stored record is compared with ours, so that a call retried
    /// after its connection broke (its first attempt committed) still answers `true`.
    fn create_execution(&mut self, e: &JobExecution) -> Result<bool, thingkit_jobs::Error> {
        let thing = e.thing_name.clone();
        let job = e.job_id.as_str().to_owned();
        let bytes = encode(e)?;
        self.call("put", move |client, sql| {
            if client.execute(&sql.create_execution, &[&thing, &job, &bytes])? == 1 {
                return Ok(true);
            }
            let stored = client.query_opt(&sql.get_execution, &[&thing, &job])?;
            Ok(match stored {
                Some(row) => row.try_get::<_, &[u8]>(0)? == bytes.as_slice(),
                None => false,
            })
        })
    }

    fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, thingkit_jobs::Error> {
        let thing = thing.to_owned();
        self.call("list", move |client, sql| {
            values("execution", &client.query(&sql.of_thing, &[&thing])?)
        })
    }

    fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, thingkit_jobs::Error> {
        let job = job.as_str().to_owned();
        self.call("list", move |client, sql| {
            values("execution", &client.query(&sql.of_job, &[&job])?)
        })
    }

    fn delete_execution(&mut self, thing: &str, job: &JobId) -> Result<(), thingkit_jobs::Error> {
        let thing = thing.to_owned();
        let job = job.as_str().to_owned();
        self.call("delete", move |client, sql| {
            client.execute(&sql.delete_execution, &[&thing, &job])?;
            Ok(())
        })
    }

    fn put_rollout(&mut self, job: &JobId, things: &[String]) -> Result<(), thingkit_jobs::Error> {
        let job = job.as_str().to_owned();
        let bytes = if things.is_empty() {
            None
        } else {
            Some(encode(&things)?)
        };
        self.call("put", move |client, sql| {
            match &bytes {
                Some(bytes) => client.execute(&sql.put_rollout, &[&job, bytes])?,
                None => client.execute(&sql.delete_rollout, &[&job])?,
            };
            Ok(())
        })
    }

    fn rollout(&self, job: &JobId) -> Result<Vec<String>, thingkit_jobs::Error> {
        let job = job.as_str().to_owned();
        self.call("get", move |client, sql| {
            match client.query_opt(&sql.rollout, &[&job])? {
                Some(row) => decode("rollout", row.try_get::<_, &[u8]>(0)?),
                None => Ok(Vec::new()),
            }
        })
    }
}
