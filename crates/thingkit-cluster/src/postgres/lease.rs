//! [`PgJobLease`]: which server paces which job, as rows of the `job_lease` table.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use thingkit_jobs::{JobId, PacingLease};

use super::config::PostgresConfig;
use super::connection::Connection;
use super::jobs::MIGRATIONS;
use super::migration::{self, quote};
use crate::error::Error;

/// The default duration of a job lease: a server that crashed hands its rollouts over after
/// at most this long.
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(15);

struct Sql {
    hold: String,
    release: String,
}

/// A [`PacingLease`] on PostgreSQL, so that of the servers sharing a
/// [`PgJobStore`](crate::PgJobStore) exactly one paces each job (its rollout rate, schedule, abort criteria
/// and completion): table `job_lease` (job id, owner server ID, expiry in Unix seconds).
///
/// [`hold`](PacingLease::hold) is one statement for all the jobs asked about — an
/// `INSERT ... ON CONFLICT DO UPDATE ... WHERE` the row is the caller's own or has expired,
/// `RETURNING` the rows it wrote — so when two servers claim a job at once PostgreSQL's row lock
/// makes one of them win and the other see the winner's row. The engine renews every third of
/// the lease's duration; a server that stops (crash, `kill -9`, a cut network) loses its jobs
/// when their leases expire, and the next server to renew takes them over.
///
/// Expiry compares the servers' own clocks (the engine is sans-IO and passes its `now`), so
/// the servers' clocks must agree to well within the lease's duration (NTP).
pub struct PgJobLease {
    connection: Connection,
    sql: Arc<Sql>,
    owner: String,
    lasts: u64,
}

impl std::fmt::Debug for PgJobLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJobLease")
            .field("owner", &self.owner)
            .field("lasts", &self.lasts)
            .finish_non_exhaustive()
    }
}

impl PgJobLease {
    /// Connects as the lease holder `owner` (the server's `server_id`), whose leases last
    /// `lasts` (at least a second; [`DEFAULT_JOB_LEASE`]), creating the schema and applying
    /// the job tables' migrations if needed.
    ///
    /// # Errors
    ///
    /// As [`PgRegistryStore::open`](crate::PgRegistryStore::open).
    pub fn open(config: &PostgresConfig, owner: &str, lasts: Duration) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let q = quote(&schema);
        let sql = Arc::new(Sql {
            hold: format!(
                "INSERT INTO {q}.job_lease AS l (job_id, owner, expires_at)
                 SELECT id, $2, $3 FROM unnest($1::text[]) AS id
                 ON CONFLICT (job_id) DO UPDATE
                 SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                 WHERE l.owner = EXCLUDED.owner OR l.expires_at <= $4
                 RETURNING job_id"
            ),
            release: format!("DELETE FROM {q}.job_lease WHERE job_id = $1 AND owner = $2"),
        });
        let connection = Connection::open(
            config,
            "thingkit-pg-lease",
            Box::new(move |client| migration::apply(client, &schema, &MIGRATIONS)),
        )?;
        Ok(PgJobLease {
            connection,
            sql,
            owner: owner.to_owned(),
            lasts: lasts.as_secs().max(1),
        })
    }

    /// The lease holder's name (the server ID).
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn internal(e: Error) -> thingkit_jobs::Error {
    thingkit_jobs::Error::InternalError {
        detail: e.to_string(),
    }
}

impl PacingLease for PgJobLease {
    fn hold(&mut self, jobs: &[JobId], now: u64) -> Result<HashSet<JobId>, thingkit_jobs::Error> {
        if jobs.is_empty() {
            return Ok(HashSet::new());
        }
        // One row per job: ON CONFLICT may not touch a row twice in one statement.
        let ids: Vec<String> = jobs
            .iter()
            .map(|j| j.as_str().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let owner = self.owner.clone();
        let expires = seconds(now.saturating_add(self.lasts));
        let now = seconds(now);
        let sql = Arc::clone(&self.sql);
        let rows = self
            .connection
            .call("lease", move |client| {
                let rows = client.query(&sql.hold, &[&ids, &owner, &expires, &now])?;
                rows.iter()
                    .map(|r| r.try_get::<_, String>(0).map_err(Into::into))
                    .collect::<Result<Vec<String>, _>>()
            })
            .map_err(internal)?;
        Ok(rows
            .into_iter()
            .filter_map(|id| JobId::new(&id).ok())
            .collect())
    }

    fn release(&mut self, job: &JobId) -> Result<(), thingkit_jobs::Error> {
        let job = job.as_str().to_owned();
        let owner = self.owner.clone();
        let sql = Arc::clone(&self.sql);
        self.connection
            .call("lease", move |client| {
                client.execute(&sql.release, &[&job, &owner])?;
                Ok(())
            })
            .map_err(internal)
    }

    fn renew_every(&self) -> Option<u64> {
        Some((self.lasts / 3).max(1))
    }

    fn lasts(&self) -> Option<u64> {
        Some(self.lasts)
    }
}
