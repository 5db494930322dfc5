//! AWS IoT Jobs, sans-IO: jobs, job executions with AWS's exact state machine (J-01 … J-06),
//! and the device MQTT API with AWS's documents, so that an unchanged AWS IoT device SDK jobs
//! client works against it. [`device::handle`] is the pure core (executions, topic, payload and
//! time in; writes and messages out); [`Jobs`] drives it over a durable [`JobStore`].
//!
//! ```
//! use thingkit_jobs::{Job, JobId, Jobs, Limits, MemoryJobStore};
//!
//! let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
//! let id = JobId::new("update-1")?;
//! let job = Job::new(id.clone(), r#"{"op":"reboot"}"#, vec!["lamp".into()], 0);
//! let notes = jobs.create_job(job, &["lamp".to_owned()], 100)?;
//! assert_eq!(notes[0].topic, "$aws/things/lamp/jobs/notify");
//!
//! let out = jobs
//!     .request("$aws/things/lamp/jobs/start-next", br#"{"clientToken":"c1"}"#, 101)
//!     .expect("a jobs request topic");
//! assert_eq!(out[0].topic, "$aws/things/lamp/jobs/start-next/accepted");
//! assert_eq!(
//!     std::str::from_utf8(&out[0].payload)?,
//!     r#"{"execution":{"jobId":"update-1","thingName":"lamp","jobDocument":{"op":"reboot"},"status":"IN_PROGRESS","queuedAt":100,"startedAt":101,"lastUpdatedAt":101,"versionNumber":2,"executionNumber":1},"timestamp":101,"clientToken":"c1"}"#
//! );
//!
//! // The embedded SDK sends expectedVersion as a string; both forms are accepted.
//! let out = jobs
//!     .request(
//!         "$aws/things/lamp/jobs/update-1/update",
//!         br#"{"status":"SUCCEEDED","expectedVersion":"2"}"#,
//!         102,
//!     )
//!     .expect("a jobs request topic");
//! assert_eq!(out[0].payload, br#"{"timestamp":102}"#);
//! // All executions of the snapshot job are terminal: the job is COMPLETED.
//! assert_eq!(jobs.describe_job(&id)?.status, thingkit_jobs::JobStatus::Completed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Several servers on one store
//!
//! Device requests and control-plane calls read and write through the [`JobStore`], so every
//! server sharing it sees every job. Pacing a rollout (rate, schedule, abort criteria,
//! completion) needs one owner per job: [`Jobs::open_with`] takes a [`PacingLease`] that grants
//! each job to one engine at a time (`thingkit-cluster`'s `PgJobLease` on PostgreSQL), and the
//! engine holding a job reads its stored executions on every renewal so that outcomes reported
//! through other servers count. [`JobStore::create_execution`] keeps one execution per thing
//! and job even when two engines race during a hand-over.
//!
//! # Cargo features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `redb` | yes | [`RedbJobStore`]: jobs and executions in one redb file, every write durable |
//! | `test-suite` | no | `conformance::run` and `conformance::reopen`: the tests every [`JobStore`] must pass |
//!
//! # Specifications implemented
//!
//! `/work/shared/specs/shadow-jobs.md` (the AWS IoT Jobs digest): §B.1 concepts, §B.2 execution
//! states and rules J-01 … J-06, §B.3 the device MQTT API, its documents and error codes, the
//! configuration shapes and ranges of §B.4, and the readings F-J1 … F-J9 and F-J14 of §F listed
//! in the README. JSON input is read strictly by `thingkit-json` (duplicate keys refused).
//!
//! # What is not here
//!
//! Scheduled jobs (start/end times, maintenance windows); presigned-URL substitution;
//! namespaces; job event topics. The broker topic service and the HTTP control plane are in
//! `thingkit-broker` and `thingkit-api`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod device;
pub mod error;
pub mod execution;
pub mod job;
pub mod lease;
pub mod rollout;
pub mod schedule;
pub mod store;

// Added after the skeleton's list (kept apart so rustfmt does not re-sort it into it).
pub mod ota;
pub mod service;

pub use device::{Limits, OutMessage, ThingJob, request_filters};
pub use error::Error;
pub use execution::{Actor, ExecutionStatus, JobExecution, check_transition};
pub use job::{Job, JobId, JobStatus, TargetSelection};
pub use lease::{MemoryLease, PacingLease, SoleServer};
pub use service::{
    ABORT_COMMENT, ABORT_REASON_CODE, CancelJob, JobUpdate, Jobs, ProcessDetails, plan_of,
};

/// The engine the server shares between the broker (device requests) and the control plane,
/// over any store.
pub type DynJobs = Jobs<Box<dyn JobStore>>;
#[cfg(feature = "redb")]
pub use store::RedbJobStore;
#[cfg(feature = "test-suite")]
pub use store::conformance;
pub use store::{JobStore, MemoryJobStore};
