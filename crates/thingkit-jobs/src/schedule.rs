//! The rollout pacing engine: which things to notify now, which executions timed out, and when a
//! job aborts, for many jobs and devices at once (spec §B.4, J-11 … J-17).
//!
//! [`Pacer`] is sans-IO: the caller feeds it events (`enqueue`, `record_outcome`) and asks it what is
//! due (`due`, `expire`), passing the current time each time. Time is **unix seconds**
//! ([`UnixSeconds`]), as in [`crate::rollout`].
//!
//! No operation scans all executions or all jobs. Per job the pacer keeps a FIFO of things waiting
//! to be notified (creation order), a one-minute window counting notifications at the current rollout
//! rate, and the outcome counts that drive the rate and the abort criteria. Across jobs it keeps a
//! min-heap of the instants at which a job may notify again, and [`Timers`], a min-heap of execution
//! deadlines. Both heaps use lazy invalidation: an entry whose instant no longer matches the current
//! state is skipped when it surfaces, and the timer heap is compacted when superseded entries
//! outnumber live ones. Every event therefore costs O(log n) amortized.
//!
//! Rate windows are fixed minutes counted from the moment the job was added: window *i* covers
//! `[added + 60 i, added + 60 (i + 1))`. A window's rate is fixed when it opens, from the counts at
//! that moment (`rate_per_minute(notified, succeeded)`), and at most that many things are notified
//! in it: a rate increase earned mid-minute applies from the next minute, so no minute ever exceeds
//! the rate in force when it began. With the guide's table (base 50, factor 2, 1000 notified) this
//! gives exactly 20 minutes at 50, 10 at 100, 5 at 200, then 400.
//!
//! Outcomes are counted per attempt as reported: the pacer does not apply retry rules. A caller that
//! retries an execution ([`crate::rollout::retry_allowed`]) re-enqueues the thing. The pacer trusts
//! its caller to feed only valid transitions (the execution state machine guards them: one terminal
//! report per attempt, none after TIMED_OUT); it never panics on any sequence of calls.
//!
//! ```
//! use thingkit_jobs::rollout::RolloutConfig;
//! use thingkit_jobs::schedule::{JobPlan, Pacer, Report};
//!
//! let mut pacer: Pacer<&str, u32> = Pacer::new();
//! let plan = JobPlan { rollout: RolloutConfig::constant(2)?, ..JobPlan::default() };
//! pacer.add_job("ota", plan, 0)?;
//! for thing in 0..3 {
//!     pacer.enqueue(&"ota", thing, 0)?;
//! }
//! assert_eq!(pacer.due(0).len(), 2); // two per minute
//! assert_eq!(pacer.due(59).len(), 0);
//! assert_eq!(pacer.due(60).len(), 1);
//! assert_eq!(pacer.record_outcome(&"ota", &0, Report::Succeeded, 61)?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;

use thiserror::Error;

use crate::rollout::{
    AbortConfig, ExecutionTimer, OutcomeCounts, RolloutConfig, StepTimeout, TimeoutConfig,
    UnixSeconds, should_abort,
};

/// A job or thing key the pacer can index: job ids and thing names in the full service.
pub trait Key: Clone + Eq + Hash + Ord {}

impl<K: Clone + Eq + Hash + Ord> Key for K {}

/// Superseded timer entries tolerated beyond the live ones before the heap is compacted.
const COMPACTION_SLACK: usize = 1024;

/// Length of a rate window: one minute.
pub const WINDOW_SECONDS: u64 = 60;

/// A pacer operation that names a job it does not know, or adds one twice.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The job was never added to this pacer.
    #[error("job is not known to the pacer")]
    UnknownJob,
    /// A job with this key was already added.
    #[error("job was already added to the pacer")]
    DuplicateJob,
}

/// What the pacer needs to know about a job: its rollout, abort and timeout configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobPlan {
    /// `jobExecutionsRolloutConfig` (J-11, J-12).
    pub rollout: RolloutConfig,
    /// `abortConfig` (J-13), if any.
    pub abort: Option<AbortConfig>,
    /// `timeoutConfig` (J-15).
    pub timeout: TimeoutConfig,
}

/// A device's report on its execution, as far as pacing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// IN_PROGRESS, with the update's `stepTimeoutInMinutes` (J-15, J-17).
    InProgress(StepTimeout),
    /// SUCCEEDED.
    Succeeded,
    /// FAILED.
    Failed,
    /// REJECTED.
    Rejected,
    /// TIMED_OUT, decided by a caller that keeps its own deadlines (the [`crate::Jobs`]
    /// driver keeps them in the stored executions); counted like [`Pacer::expire`] counts.
    TimedOut,
}

/// Notify `thing` of `job` now: its execution leaves the rollout queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify<J, T> {
    /// The job.
    pub job: J,
    /// The thing to notify.
    pub thing: T,
}

/// The execution of `job` on `thing` timed out (J-16).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimedOut<J, T> {
    /// The job.
    pub job: J,
    /// The thing whose execution timed out.
    pub thing: T,
}

/// `job` aborted (J-13, J-14): it is CANCELED and its queued executions are canceled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted<J, T> {
    /// The job.
    pub job: J,
    /// Index in `abortConfig.criteriaList` of the criterion that fired.
    pub criterion: usize,
    /// Things whose executions were still queued (never notified), in queue order: now CANCELED.
    /// IN_PROGRESS executions are not canceled (J-14).
    pub canceled: Vec<T>,
}

/// The result of [`Pacer::expire`]: executions that timed out and jobs that aborted because of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry<J, T> {
    /// Timed-out executions, earliest deadline first.
    pub timed_out: Vec<TimedOut<J, T>>,
    /// Jobs whose abort criteria fired on these timeouts.
    pub aborted: Vec<Aborted<J, T>>,
}

impl<J, T> Default for Expiry<J, T> {
    fn default() -> Self {
        Self {
            timed_out: Vec::new(),
            aborted: Vec::new(),
        }
    }
}

/// Execution deadlines over all jobs: a min-heap of `(deadline, job, thing)` with lazy invalidation.
#[derive(Debug, Clone)]
pub struct Timers<J, T> {
    current: HashMap<(J, T), ExecutionTimer>,
    heap: BinaryHeap<Reverse<(UnixSeconds, J, T)>>,
}

impl<J: Key, T: Key> Default for Timers<J, T> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<J: Key, T: Key> Timers<J, T> {
    /// An empty timer set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an IN_PROGRESS report at `now`: starts the timers on the first one (J-15), applies
    /// `step` on later ones (J-17).
    pub fn in_progress(
        &mut self,
        job: &J,
        thing: &T,
        config: &TimeoutConfig,
        step: StepTimeout,
        now: UnixSeconds,
    ) {
        let key = (job.clone(), thing.clone());
        let timer = match self.current.get_mut(&key) {
            Some(timer) => {
                let before = timer.deadline();
                timer.update_step(now, step);
                if timer.deadline().is_none() {
                    self.current.remove(&key);
                    return;
                }
                if timer.deadline() == before {
                    return;
                }
                *timer
            }
            None => {
                let timer = ExecutionTimer::start(config, now, step);
                if timer.deadline().is_none() {
                    return;
                }
                self.current.insert(key, timer);
                timer
            }
        };
        if let Some(deadline) = timer.deadline() {
            self.heap
                .push(Reverse((deadline, job.clone(), thing.clone())));
            self.compact_if_stale();
        }
    }

    /// Sets an execution's timers as they are (a caller that keeps them elsewhere, like
    /// [`crate::Jobs`] in the stored executions); a timer without a deadline stops them.
    pub fn set(&mut self, job: &J, thing: &T, timer: ExecutionTimer) {
        let key = (job.clone(), thing.clone());
        let Some(deadline) = timer.deadline() else {
            self.stop(job, thing);
            return;
        };
        if self.current.insert(key, timer).and_then(|t| t.deadline()) != Some(deadline) {
            self.heap
                .push(Reverse((deadline, job.clone(), thing.clone())));
        }
        self.compact_if_stale();
    }

    /// The earliest deadline in the heap (possibly a superseded one: waking early is harmless).
    pub fn next_deadline(&self) -> Option<UnixSeconds> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Stops the timers of an execution that reached a terminal state.
    pub fn stop(&mut self, job: &J, thing: &T) {
        if self.current.remove(&(job.clone(), thing.clone())).is_some() {
            self.compact_if_stale();
        }
    }

    /// Drops superseded heap entries once they outnumber the live ones (plus slack), so memory
    /// stays proportional to running timers even if `expire` is called rarely. Each compaction
    /// removes at least half the heap, so its cost is O(1) amortized per stopped timer.
    fn compact_if_stale(&mut self) {
        if self.heap.len() > 2 * self.current.len() + COMPACTION_SLACK {
            let current = &self.current;
            self.heap.retain(|Reverse((deadline, job, thing))| {
                current
                    .get(&(job.clone(), thing.clone()))
                    .is_some_and(|t| t.deadline() == Some(*deadline))
            });
        }
    }

    /// The current timer of an execution, if one runs.
    pub fn get(&self, job: &J, thing: &T) -> Option<&ExecutionTimer> {
        self.current.get(&(job.clone(), thing.clone()))
    }

    /// Removes and returns every execution whose deadline is at or before `now`, earliest first.
    pub fn expire(&mut self, now: UnixSeconds) -> Vec<TimedOut<J, T>> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, _, _))) = self.heap.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((deadline, job, thing))) = self.heap.pop() else {
                break;
            };
            let key = (job, thing);
            let live = self
                .current
                .get(&key)
                .is_some_and(|t| t.deadline() == Some(deadline));
            if live {
                self.current.remove(&key);
                let (job, thing) = key;
                out.push(TimedOut { job, thing });
            }
        }
        out
    }

    /// The number of running timers.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether no timer runs.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

/// A job's rollout state as the pacer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Notifying queued things at the rollout rate.
    Rolling,
    /// Aborted by the criterion at this index (J-13).
    Aborted(usize),
    /// Canceled by [`Pacer::cancel`].
    Canceled,
}

#[derive(Debug, Clone)]
struct JobState<T> {
    plan: JobPlan,
    status: JobStatus,
    queue: VecDeque<T>,
    notified: u64,
    counts: OutcomeCounts,
    window_start: UnixSeconds,
    sent_in_window: u32,
    step: u64,
    rate: u32,
    wake_at: Option<UnixSeconds>,
}

impl<T> JobState<T> {
    fn refresh_rate(&mut self) {
        let step = self
            .plan
            .rollout
            .exponential_rate()
            .map_or(0, |e| e.step(self.notified, self.counts.succeeded));
        if step != self.step {
            self.step = step;
            self.rate = self.plan.rollout.rate_at_step(step);
        }
    }

    fn roll_window(&mut self, now: UnixSeconds) {
        if now >= self.window_start.saturating_add(WINDOW_SECONDS) {
            let windows = (now - self.window_start) / WINDOW_SECONDS;
            self.window_start += windows * WINDOW_SECONDS;
            self.sent_in_window = 0;
            self.refresh_rate();
        }
    }
}

/// Paces notifications, tracks timers and applies abort criteria for many jobs (module docs).
#[derive(Debug, Clone)]
pub struct Pacer<J, T> {
    jobs: HashMap<J, JobState<T>>,
    wake: BinaryHeap<Reverse<(UnixSeconds, J)>>,
    timers: Timers<J, T>,
}

impl<J: Key, T: Key> Default for Pacer<J, T> {
    fn default() -> Self {
        Self {
            jobs: HashMap::new(),
            wake: BinaryHeap::new(),
            timers: Timers::new(),
        }
    }
}

impl<J: Key, T: Key> Pacer<J, T> {
    /// An empty pacer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job whose rollout starts at `now` (its first rate window opens then).
    pub fn add_job(
        &mut self,
        job: J,
        plan: JobPlan,
        now: UnixSeconds,
    ) -> Result<(), ScheduleError> {
        if self.jobs.contains_key(&job) {
            return Err(ScheduleError::DuplicateJob);
        }
        let rate = plan.rollout.rate_at_step(0);
        self.jobs.insert(
            job,
            JobState {
                plan,
                status: JobStatus::Rolling,
                queue: VecDeque::new(),
                notified: 0,
                counts: OutcomeCounts::default(),
                window_start: now,
                sent_in_window: 0,
                step: 0,
                rate,
                wake_at: None,
            },
        );
        Ok(())
    }

    /// Adds a job again after a restart, with the counts it had reached: `notified` things
    /// notified and `counts` outcomes (from the stored executions). Its first rate window
    /// opens at `now`, at the rate those counts give (J-12), with `sent_recently` (the things
    /// notified in the minute before `now`) already spent from it, so restarting cannot
    /// notify faster than the rate, however often it happens.
    pub fn restore_job(
        &mut self,
        job: J,
        plan: JobPlan,
        now: UnixSeconds,
        notified: u64,
        counts: OutcomeCounts,
        sent_recently: u32,
    ) -> Result<(), ScheduleError> {
        self.add_job(job.clone(), plan, now)?;
        if let Some(state) = self.jobs.get_mut(&job) {
            state.notified = notified;
            state.counts = counts;
            state.refresh_rate();
            state.sent_in_window = sent_recently.min(state.rate);
        }
        Ok(())
    }

    /// Replaces `job`'s plan (UpdateJob): the new rate applies from the next rate window, the
    /// new abort criteria from the next outcome, on the counts reached so far.
    pub fn set_plan(&mut self, job: &J, plan: JobPlan) -> Result<(), ScheduleError> {
        let state = self.jobs.get_mut(job).ok_or(ScheduleError::UnknownJob)?;
        state.plan = plan;
        // The current window keeps its rate; the next one recomputes it from the new plan.
        state.step = u64::MAX;
        Ok(())
    }

    /// Forgets `job` (completed or deleted): its queue, counts and timers' entries go (the
    /// timer heap drops them lazily).
    pub fn remove_job(&mut self, job: &J) {
        if let Some(state) = self.jobs.remove(job) {
            drop(state);
            self.timers.current.retain(|(j, _), _| j != job);
        }
    }

    /// Queues `thing` to be notified of `job` (its execution is QUEUED), after the things already
    /// queued. Things enqueued on a job that is no longer rolling are ignored.
    pub fn enqueue(&mut self, job: &J, thing: T, now: UnixSeconds) -> Result<(), ScheduleError> {
        let state = self.jobs.get_mut(job).ok_or(ScheduleError::UnknownJob)?;
        if state.status != JobStatus::Rolling {
            return Ok(());
        }
        state.queue.push_back(thing);
        if state.wake_at.is_none() {
            state.wake_at = Some(now);
            self.wake.push(Reverse((now, job.clone())));
        }
        Ok(())
    }

    /// A thing that joined a CONTINUOUS job's target group after the job was created: rollout
    /// control applies only to the devices in the group at creation, later joiners get their
    /// executions "in near-real time" (J-12). It is notified at once, uses none of the window's
    /// allowance and does not count toward the notified-things rate steps; its outcomes count for
    /// abort like any other. `None` when the job no longer rolls out (aborted or canceled).
    pub fn admit_late_joiner(
        &mut self,
        job: &J,
        thing: T,
    ) -> Result<Option<Notify<J, T>>, ScheduleError> {
        let state = self.jobs.get(job).ok_or(ScheduleError::UnknownJob)?;
        if state.status != JobStatus::Rolling {
            return Ok(None);
        }
        Ok(Some(Notify {
            job: job.clone(),
            thing,
        }))
    }

    /// The things to notify at `now`, respecting each job's rate in its current minute window.
    pub fn due(&mut self, now: UnixSeconds) -> Vec<Notify<J, T>> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _))) = self.wake.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, job))) = self.wake.pop() else {
                break;
            };
            let Some(state) = self.jobs.get_mut(&job) else {
                continue;
            };
            if state.wake_at != Some(at) {
                continue; // superseded entry
            }
            state.wake_at = None;
            if state.status != JobStatus::Rolling {
                continue;
            }
            state.roll_window(now);
            while state.sent_in_window < state.rate {
                let Some(thing) = state.queue.pop_front() else {
                    break;
                };
                state.sent_in_window += 1;
                state.notified += 1;
                out.push(Notify {
                    job: job.clone(),
                    thing,
                });
            }
            if !state.queue.is_empty() {
                let next = state.window_start.saturating_add(WINDOW_SECONDS);
                state.wake_at = Some(next);
                self.wake.push(Reverse((next, job)));
            }
        }
        out
    }

    /// Records a device's report on `job`'s execution on `thing` at `now`. IN_PROGRESS starts or
    /// updates its timers; a terminal report stops them, is counted (raising the rate from the next
    /// window, J-12) and may abort the job (J-13), which the answer returns.
    pub fn record_outcome(
        &mut self,
        job: &J,
        thing: &T,
        report: Report,
        now: UnixSeconds,
    ) -> Result<Option<Aborted<J, T>>, ScheduleError> {
        let state = self.jobs.get_mut(job).ok_or(ScheduleError::UnknownJob)?;
        match report {
            Report::InProgress(step) => {
                self.timers
                    .in_progress(job, thing, &state.plan.timeout, step, now);
                return Ok(None);
            }
            Report::Succeeded => state.counts.succeeded += 1,
            Report::Failed => state.counts.failed += 1,
            Report::Rejected => state.counts.rejected += 1,
            Report::TimedOut => state.counts.timed_out += 1,
        }
        self.timers.stop(job, thing);
        Ok(self.after_outcome(job))
    }

    /// Brings `job`'s outcome counts up to `stored` — the counts of its stored executions, which
    /// include outcomes reported through other servers — each count becoming the larger of the
    /// two (an execution retried after FAILED no longer shows as FAILED in the store, but was
    /// counted here when it failed), and applies the abort criteria to the result (J-13).
    pub fn reconcile(
        &mut self,
        job: &J,
        stored: OutcomeCounts,
    ) -> Result<Option<Aborted<J, T>>, ScheduleError> {
        let state = self.jobs.get_mut(job).ok_or(ScheduleError::UnknownJob)?;
        let counts = OutcomeCounts {
            succeeded: state.counts.succeeded.max(stored.succeeded),
            failed: state.counts.failed.max(stored.failed),
            rejected: state.counts.rejected.max(stored.rejected),
            timed_out: state.counts.timed_out.max(stored.timed_out),
        };
        if counts == state.counts {
            return Ok(None);
        }
        state.counts = counts;
        Ok(self.after_outcome(job))
    }

    /// Reports and counts the executions whose timers expired at or before `now` (J-16), with any
    /// aborts they cause.
    pub fn expire(&mut self, now: UnixSeconds) -> Expiry<J, T> {
        let mut expiry = Expiry::default();
        for t in self.timers.expire(now) {
            if let Some(state) = self.jobs.get_mut(&t.job) {
                state.counts.timed_out += 1;
                if let Some(aborted) = self.after_outcome(&t.job) {
                    expiry.aborted.push(aborted);
                }
            }
            expiry.timed_out.push(t);
        }
        expiry
    }

    /// Cancels `job` (CancelJob): its queued things are returned and never notified; IN_PROGRESS
    /// executions keep running (J-14).
    pub fn cancel(&mut self, job: &J) -> Result<Vec<T>, ScheduleError> {
        let state = self.jobs.get_mut(job).ok_or(ScheduleError::UnknownJob)?;
        if state.status == JobStatus::Rolling {
            state.status = JobStatus::Canceled;
        }
        Ok(state.queue.drain(..).collect())
    }

    fn after_outcome(&mut self, job: &J) -> Option<Aborted<J, T>> {
        let state = self.jobs.get_mut(job)?;
        if state.status != JobStatus::Rolling {
            return None;
        }
        if let Some(criterion) = state
            .plan
            .abort
            .as_ref()
            .and_then(|abort| should_abort(abort, &state.counts))
        {
            state.status = JobStatus::Aborted(criterion);
            return Some(Aborted {
                job: job.clone(),
                criterion,
                canceled: state.queue.drain(..).collect(),
            });
        }
        None
    }

    /// The job's status, if known.
    pub fn status(&self, job: &J) -> Option<JobStatus> {
        self.jobs.get(job).map(|s| s.status)
    }

    /// The job's outcome counts, if known.
    pub fn counts(&self, job: &J) -> Option<OutcomeCounts> {
        self.jobs.get(job).map(|s| s.counts)
    }

    /// How many things of the job were notified, if known.
    pub fn notified(&self, job: &J) -> Option<u64> {
        self.jobs.get(job).map(|s| s.notified)
    }

    /// How many things of the job wait to be notified, if known.
    pub fn queued(&self, job: &J) -> Option<usize> {
        self.jobs.get(job).map(|s| s.queue.len())
    }

    /// The rollout rate of the job's current window (fixed when it opened), if known.
    pub fn rate_per_minute(&self, job: &J) -> Option<u32> {
        self.jobs.get(job).map(|s| s.rate)
    }

    /// `approximateSecondsBeforeTimedOut` for an execution at `now`, if a timer runs (J-16).
    pub fn approximate_seconds_before_timed_out(
        &self,
        job: &J,
        thing: &T,
        now: UnixSeconds,
    ) -> Option<u64> {
        self.timers
            .get(job, thing)
            .and_then(|t| t.approximate_seconds_before_timed_out(now))
    }

    /// The earliest instant at which [`Pacer::due`] or [`Pacer::expire`] may have work; a driver
    /// sleeps until then (it may be a superseded entry, in which case calling early is harmless).
    pub fn next_wakeup(&self) -> Option<UnixSeconds> {
        let notify = self.wake.peek().map(|Reverse((at, _))| *at);
        let timer = self.timers.next_deadline();
        match (notify, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_timers_do_not_accumulate_in_the_heap() {
        let config = TimeoutConfig::new(Some(10)).expect("valid timeout");
        let mut timers: Timers<u8, u32> = Timers::new();
        for thing in 0..10_000 {
            timers.in_progress(&1, &thing, &config, StepTimeout::Keep, 0);
            timers.stop(&1, &thing);
        }
        assert!(timers.is_empty());
        assert!(timers.heap.len() <= COMPACTION_SLACK + 1);
        // Live timers survive compaction and still expire.
        timers.in_progress(&1, &7, &config, StepTimeout::Keep, 0);
        for thing in 10_000..12_000 {
            timers.in_progress(&1, &thing, &config, StepTimeout::Keep, 100);
            timers.stop(&1, &thing);
        }
        let expired = timers.expire(600);
        assert_eq!(expired, vec![TimedOut { job: 1, thing: 7 }]);
    }
}
