//! Who paces a job: a [`PacingLease`] answers "may this server pace job X now?" for the
//! engine. One server alone ([`SoleServer`], the default) paces every job; servers sharing a
//! store (a cluster) each hold leases on some jobs, so that exactly one of them paces a given
//! job at a time — notifies its rollout's things at its rate, counts its outcomes for the
//! exponential rate and the abort criteria, applies its schedule and completes it.
//!
//! Everything else — device requests, control-plane calls, execution timeouts and retries —
//! runs on whichever server receives it, through the shared store. The lease's I/O (a row per
//! job in PostgreSQL for `thingkit-cluster`'s `PgJobLease`) stays behind this trait; the
//! engine only asks, with the current time as a parameter.

use std::collections::HashSet;

use crate::error::Error;
use crate::job::JobId;

/// The right to pace jobs, held per job for a limited time and renewed by asking again.
///
/// [`Jobs`](crate::Jobs) calls [`hold`](PacingLease::hold) every
/// [`renew_every`](PacingLease::renew_every) seconds with every job that may need pacing (IN_PROGRESS
/// and SCHEDULED jobs), paces the ones it holds and forgets the rest; when one of its jobs
/// finishes or is canceled it calls [`release`](PacingLease::release). An implementation must
/// grant each job to at most one holder at a time, and must let another holder take a job over
/// once its holder stopped renewing (crashed) for longer than the lease lasts.
pub trait PacingLease: Send {
    /// Claims or renews, at `now` (Unix seconds), the lease of each of `jobs`, and returns the
    /// ones this holder has after the call: those it held already (renewed), those nobody held
    /// and those whose holder's lease expired.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when the backend fails; the engine then paces what it held
    /// before until the lease it knows of expires.
    fn hold(&mut self, jobs: &[JobId], now: u64) -> Result<HashSet<JobId>, Error>;

    /// Gives the lease of `job` up (the job finished, was canceled or deleted): another holder
    /// may claim it at once. Nothing when this holder does not hold it.
    ///
    /// # Errors
    ///
    /// [`Error::InternalError`] when the backend fails; the lease then expires on its own.
    fn release(&mut self, job: &JobId) -> Result<(), Error>;

    /// How often, in seconds, the engine renews its leases and looks for jobs to take over:
    /// well within the lease's duration. `None` for a holder that never needs to ask again
    /// (one server alone).
    fn renew_every(&self) -> Option<u64>;

    /// How long, in seconds, a lease granted at `now` lasts: the engine stops pacing a job whose
    /// lease it could not renew within this time after its last successful
    /// [`hold`](PacingLease::hold). `None`: forever.
    fn lasts(&self) -> Option<u64>;
}

/// One server alone: it holds every job, always. The default of [`Jobs`](crate::Jobs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoleServer;

impl PacingLease for SoleServer {
    fn hold(&mut self, jobs: &[JobId], _now: u64) -> Result<HashSet<JobId>, Error> {
        Ok(jobs.iter().cloned().collect())
    }

    fn release(&mut self, _job: &JobId) -> Result<(), Error> {
        Ok(())
    }

    fn renew_every(&self) -> Option<u64> {
        None
    }

    fn lasts(&self) -> Option<u64> {
        None
    }
}

/// Leases in memory shared by several engines in one process (tests, or several engines on
/// one store): the reference model of what a cluster's lease must do.
#[derive(Debug, Clone)]
pub struct MemoryLease {
    holder: String,
    seconds: u64,
    leases: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<JobId, (String, u64)>>>,
}

impl MemoryLease {
    /// A lease table whose leases last `seconds`, with `holder` as the first holder.
    pub fn new(holder: &str, seconds: u64) -> Self {
        MemoryLease {
            holder: holder.to_owned(),
            seconds: seconds.max(1),
            leases: Default::default(),
        }
    }

    /// Another holder of the same lease table.
    pub fn holder(&self, holder: &str) -> Self {
        MemoryLease {
            holder: holder.to_owned(),
            seconds: self.seconds,
            leases: self.leases.clone(),
        }
    }
}

impl PacingLease for MemoryLease {
    fn hold(&mut self, jobs: &[JobId], now: u64) -> Result<HashSet<JobId>, Error> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = HashSet::new();
        for job in jobs {
            let free = match leases.get(job) {
                Some((holder, expires)) => *holder == self.holder || *expires <= now,
                None => true,
            };
            if free {
                leases.insert(
                    job.clone(),
                    (self.holder.clone(), now.saturating_add(self.seconds)),
                );
                held.insert(job.clone());
            }
        }
        Ok(held)
    }

    fn release(&mut self, job: &JobId) -> Result<(), Error> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(job).is_some_and(|(h, _)| *h == self.holder) {
            leases.remove(job);
        }
        Ok(())
    }

    fn renew_every(&self) -> Option<u64> {
        Some((self.seconds / 3).max(1))
    }

    fn lasts(&self) -> Option<u64> {
        Some(self.seconds)
    }
}
