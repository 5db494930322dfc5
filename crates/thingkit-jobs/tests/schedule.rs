//! The pacing engine over simulated rollouts: rate, abort and timers together (spec §B.4).

use thingkit_jobs::rollout::{
    AbortConfig, AbortCriterion, AbortFailureType, ExponentialRate, OutcomeCounts, Percentage,
    RateIncreaseCriteria, RolloutConfig, StepTimeout, TimeoutConfig, rate_per_minute,
};
use thingkit_jobs::schedule::{JobPlan, JobStatus, Notify, Pacer, Report, ScheduleError};

const T0: u64 = 1_700_000_000;

fn abort_failed_20_percent_after_100() -> AbortConfig {
    AbortConfig::new(vec![
        AbortCriterion::new(
            AbortFailureType::Failed,
            Percentage::from_hundredths(2000).unwrap(),
            100,
        )
        .unwrap(),
    ])
    .unwrap()
}

/// Deterministic device behaviour: the first 300 devices fail 1 in 10, later ones 3 in 10.
fn fails(device: u32) -> bool {
    let h = device.wrapping_mul(2_654_435_761) >> 7;
    if device < 300 {
        h.is_multiple_of(10)
    } else {
        h % 10 < 3
    }
}

#[test]
fn rollout_to_10000_devices_aborts_exactly_when_the_arithmetic_says() {
    const DEVICES: u32 = 10_000;
    // The reference: outcomes arrive in notification order; the abort fires on the first outcome
    // after which completed >= 100 and failed * 100 >= 20 * completed.
    let mut failed = 0u64;
    let mut expected_abort_after = None;
    for d in 0..DEVICES {
        if fails(d) {
            failed += 1;
        }
        let completed = u64::from(d) + 1;
        if completed >= 100 && failed * 100 >= 20 * completed {
            expected_abort_after = Some(d);
            break;
        }
    }
    let expected_abort_after =
        expected_abort_after.expect("30% failures must trip a 20% criterion");
    assert!(
        expected_abort_after > 100,
        "the scenario should not abort at the first check"
    );

    let mut pacer: Pacer<&str, u32> = Pacer::new();
    let plan = JobPlan {
        rollout: RolloutConfig::constant(100).unwrap(),
        abort: Some(abort_failed_20_percent_after_100()),
        timeout: TimeoutConfig::default(),
    };
    pacer.add_job("ota", plan, T0).unwrap();
    for d in 0..DEVICES {
        pacer.enqueue(&"ota", d, T0).unwrap();
    }

    let mut aborted_at = None;
    let mut notified_after_abort = 0;
    let mut notified_total = 0u32;
    for minute in 0..200u64 {
        let now = T0 + minute * 60;
        let batch = pacer.due(now);
        assert!(batch.len() <= 100, "rate is 100 per minute");
        if aborted_at.is_some() {
            notified_after_abort += batch.len();
        }
        for Notify { thing, .. } in batch {
            notified_total += 1;
            pacer
                .record_outcome(&"ota", &thing, Report::InProgress(StepTimeout::Keep), now)
                .unwrap();
            let report = if fails(thing) {
                Report::Failed
            } else {
                Report::Succeeded
            };
            if let Some(aborted) = pacer.record_outcome(&"ota", &thing, report, now).unwrap() {
                assert!(aborted_at.is_none(), "abort fires once");
                assert_eq!(aborted.criterion, 0);
                assert_eq!(thing, expected_abort_after);
                let first_queued = u32::try_from((minute + 1) * 100).unwrap();
                assert_eq!(aborted.canceled.first(), Some(&first_queued));
                assert_eq!(aborted.canceled.len(), (DEVICES - first_queued) as usize);
                aborted_at = Some(thing);
            }
        }
    }
    assert_eq!(aborted_at, Some(expected_abort_after));
    assert_eq!(notified_after_abort, 0);
    assert_eq!(pacer.status(&"ota"), Some(JobStatus::Aborted(0)));
    assert_eq!(pacer.queued(&"ota"), Some(0));
    // Things notified in the abort's minute still report; nothing else was notified.
    assert_eq!(u64::from(notified_total), pacer.notified(&"ota").unwrap());
    assert!(notified_total.is_multiple_of(100));
    // Enqueueing after the abort notifies nobody.
    pacer.enqueue(&"ota", 99_999, T0 + 10_000).unwrap();
    assert!(pacer.due(T0 + 20_000).is_empty());
}

#[test]
fn exponential_rate_is_followed_minute_by_minute() {
    let rollout = RolloutConfig::exponential(
        ExponentialRate::new(
            50,
            20,
            RateIncreaseCriteria {
                number_of_notified_things: Some(1000),
                number_of_succeeded_things: None,
            },
        )
        .unwrap(),
        Some(1000),
    )
    .unwrap();
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    pacer
        .add_job(
            1,
            JobPlan {
                rollout: rollout.clone(),
                ..JobPlan::default()
            },
            T0,
        )
        .unwrap();
    for d in 0..10_000 {
        pacer.enqueue(&1, d, T0).unwrap();
    }
    let mut per_minute = Vec::new();
    let mut notified = 0u64;
    for minute in 0..60u64 {
        // Calling several times within the minute changes nothing.
        let mut n = pacer.due(T0 + minute * 60).len();
        n += pacer.due(T0 + minute * 60 + 30).len();
        n += pacer.due(T0 + minute * 60 + 59).len();
        // Reference: each minute notifies the rate in force when it began, or what is left.
        let expected = u64::from(rate_per_minute(&rollout, notified, 0)).min(10_000 - notified);
        assert_eq!(n as u64, expected, "minute {minute}");
        notified += expected;
        per_minute.push(n);
    }
    // The guide's table: 50 until 1000 notified, 100 until 2000, 200 until 3000, 400 until 4000.
    assert!(per_minute[..20].iter().all(|&n| n == 50));
    assert!(per_minute[20..30].iter().all(|&n| n == 100));
    assert!(per_minute[30..35].iter().all(|&n| n == 200));
    assert_eq!(&per_minute[35..38], &[400, 400, 400]);
    assert_eq!(per_minute[38], 800);
    assert_eq!(notified, 10_000);
    assert_eq!(pacer.queued(&1), Some(0));
}

#[test]
fn successes_raise_the_rate_from_the_next_minute() {
    let rollout = RolloutConfig::exponential(
        ExponentialRate::new(
            10,
            20,
            RateIncreaseCriteria {
                number_of_notified_things: None,
                number_of_succeeded_things: Some(10),
            },
        )
        .unwrap(),
        None,
    )
    .unwrap();
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    pacer
        .add_job(
            1,
            JobPlan {
                rollout,
                ..JobPlan::default()
            },
            T0,
        )
        .unwrap();
    for d in 0..100 {
        pacer.enqueue(&1, d, T0).unwrap();
    }
    let first = pacer.due(T0);
    assert_eq!(first.len(), 10);
    assert!(pacer.due(T0 + 10).is_empty());
    for n in &first {
        pacer
            .record_outcome(&1, &n.thing, Report::Succeeded, T0 + 20)
            .unwrap();
    }
    // The minute that began at rate 10 stays at 10; the next one runs at 20.
    assert!(pacer.due(T0 + 59).is_empty());
    assert_eq!(pacer.due(T0 + 60).len(), 20);
    assert_eq!(pacer.rate_per_minute(&1), Some(20));
}

#[test]
fn step_timers_expire_as_in_the_guide_example() {
    let at = |m: u64| T0 + m * 60;
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    let plan = JobPlan {
        timeout: TimeoutConfig::new(Some(20)).unwrap(),
        ..JobPlan::default()
    };
    pacer.add_job(1, plan, at(0)).unwrap();
    pacer.enqueue(&1, 7, at(0)).unwrap();
    assert_eq!(pacer.due(at(0)).len(), 1);
    let step = |m| Report::InProgress(StepTimeout::Minutes(m));
    pacer
        .record_outcome(&1, &7, Report::InProgress(StepTimeout::Keep), at(0))
        .unwrap();
    pacer.record_outcome(&1, &7, step(7), at(5)).unwrap();
    assert_eq!(
        pacer.approximate_seconds_before_timed_out(&1, &7, at(5)),
        Some(7 * 60)
    );
    assert!(pacer.expire(at(11)).timed_out.is_empty());
    pacer.record_outcome(&1, &7, step(5), at(10)).unwrap();
    assert!(pacer.expire(at(14)).timed_out.is_empty()); // the 12:12 deadline was replaced
    pacer.record_outcome(&1, &7, step(9), at(13)).unwrap();
    assert!(pacer.expire(at(19)).timed_out.is_empty()); // capped at the 12:20 bound, not 12:22
    let expiry = pacer.expire(at(20));
    assert_eq!(expiry.timed_out.len(), 1);
    assert_eq!(pacer.counts(&1).unwrap().timed_out, 1);
    assert!(pacer.expire(at(100)).timed_out.is_empty());
}

#[test]
fn terminal_reports_stop_timers() {
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    let plan = JobPlan {
        timeout: TimeoutConfig::new(Some(1)).unwrap(),
        ..JobPlan::default()
    };
    pacer.add_job(1, plan, T0).unwrap();
    pacer
        .record_outcome(&1, &1, Report::InProgress(StepTimeout::Keep), T0)
        .unwrap();
    pacer
        .record_outcome(&1, &1, Report::Succeeded, T0 + 30)
        .unwrap();
    assert!(pacer.expire(T0 + 3600).timed_out.is_empty());
    assert_eq!(
        pacer.counts(&1),
        Some(OutcomeCounts {
            succeeded: 1,
            ..OutcomeCounts::default()
        })
    );
}

#[test]
fn timeouts_can_abort_a_job_and_cancel_only_queued_things() {
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    let plan = JobPlan {
        rollout: RolloutConfig::constant(2).unwrap(),
        abort: Some(
            AbortConfig::new(vec![
                AbortCriterion::new(
                    AbortFailureType::TimedOut,
                    Percentage::from_hundredths(5000).unwrap(),
                    2,
                )
                .unwrap(),
            ])
            .unwrap(),
        ),
        timeout: TimeoutConfig::new(Some(5)).unwrap(),
    };
    pacer.add_job(1, plan, T0).unwrap();
    for d in 0..10 {
        pacer.enqueue(&1, d, T0).unwrap();
    }
    for n in pacer.due(T0) {
        pacer
            .record_outcome(&1, &n.thing, Report::InProgress(StepTimeout::Keep), T0)
            .unwrap();
    }
    let second = pacer.due(T0 + 60);
    assert_eq!(second.len(), 2);
    pacer
        .record_outcome(&1, &2, Report::InProgress(StepTimeout::Keep), T0 + 60)
        .unwrap();
    let expiry = pacer.expire(T0 + 300);
    assert_eq!(expiry.timed_out.len(), 2);
    assert_eq!(expiry.aborted.len(), 1);
    assert_eq!(expiry.aborted[0].canceled, vec![4, 5, 6, 7, 8, 9]);
    // The IN_PROGRESS execution on thing 2 was not canceled: its timer still runs.
    assert_eq!(
        pacer.approximate_seconds_before_timed_out(&1, &2, T0 + 300),
        Some(60)
    );
    assert_eq!(pacer.expire(T0 + 360).timed_out.len(), 1);
    assert!(pacer.due(T0 + 1000).is_empty());
}

#[test]
fn cancel_returns_queued_things_and_stops_notifying() {
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    pacer
        .add_job(
            1,
            JobPlan {
                rollout: RolloutConfig::constant(3).unwrap(),
                ..JobPlan::default()
            },
            T0,
        )
        .unwrap();
    for d in 0..5 {
        pacer.enqueue(&1, d, T0).unwrap();
    }
    assert_eq!(pacer.due(T0).len(), 3);
    assert_eq!(pacer.cancel(&1), Ok(vec![3, 4]));
    assert!(pacer.due(T0 + 60).is_empty());
    assert_eq!(pacer.status(&1), Some(JobStatus::Canceled));
}

#[test]
fn jobs_are_paced_independently() {
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    for (job, rate) in [(1, 5), (2, 1)] {
        pacer
            .add_job(
                job,
                JobPlan {
                    rollout: RolloutConfig::constant(rate).unwrap(),
                    ..JobPlan::default()
                },
                T0,
            )
            .unwrap();
        for d in 0..10 {
            pacer.enqueue(&job, d, T0).unwrap();
        }
    }
    let batch = pacer.due(T0);
    assert_eq!(batch.iter().filter(|n| n.job == 1).count(), 5);
    assert_eq!(batch.iter().filter(|n| n.job == 2).count(), 1);
    assert_eq!(pacer.next_wakeup(), Some(T0 + 60));
}

#[test]
fn late_joiners_of_a_continuous_job_bypass_the_rollout_rate() {
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    let plan = JobPlan {
        rollout: RolloutConfig::constant(1).unwrap(),
        abort: Some(abort_failed_20_percent_after_100()),
        ..JobPlan::default()
    };
    pacer.add_job(1, plan, T0).unwrap();
    pacer.enqueue(&1, 0, T0).unwrap();
    pacer.enqueue(&1, 1, T0).unwrap();
    assert_eq!(pacer.due(T0).len(), 1);
    let late = pacer.admit_late_joiner(&1, 500).unwrap();
    assert_eq!(late, Some(Notify { job: 1, thing: 500 }));
    // The window's allowance and the notified count are untouched.
    assert_eq!(pacer.notified(&1), Some(1));
    assert!(pacer.due(T0 + 1).is_empty());
    assert_eq!(pacer.due(T0 + 60).len(), 1);
    // Outcomes of late joiners count for abort; after it, late joiners are not notified.
    let mut aborted = None;
    for thing in 1000..1100 {
        aborted = aborted.or(pacer
            .record_outcome(&1, &thing, Report::Failed, T0 + 61)
            .unwrap());
    }
    assert!(aborted.is_some());
    assert_eq!(pacer.admit_late_joiner(&1, 501), Ok(None));
}

#[test]
fn rejects_unknown_and_duplicate_jobs() {
    assert_eq!(
        Pacer::<u8, u32>::new().admit_late_joiner(&1, 1),
        Err(ScheduleError::UnknownJob)
    );
    let mut pacer: Pacer<u8, u32> = Pacer::new();
    assert_eq!(pacer.enqueue(&1, 1, T0), Err(ScheduleError::UnknownJob));
    assert_eq!(
        pacer.record_outcome(&1, &1, Report::Succeeded, T0),
        Err(ScheduleError::UnknownJob)
    );
    assert_eq!(pacer.cancel(&1), Err(ScheduleError::UnknownJob));
    pacer.add_job(1, JobPlan::default(), T0).unwrap();
    assert_eq!(
        pacer.add_job(1, JobPlan::default(), T0),
        Err(ScheduleError::DuplicateJob)
    );
}

mod model {
    //! The pacer against a naive model that scans everything on every call.

    use proptest::prelude::*;
    use thingkit_jobs::rollout::{
        AbortConfig, AbortCriterion, AbortFailureType, ExecutionTimer, ExponentialRate,
        OutcomeCounts, Percentage, RateIncreaseCriteria, RolloutConfig, StepTimeout, TimeoutConfig,
        rate_per_minute, should_abort,
    };
    use thingkit_jobs::schedule::{JobPlan, Pacer, Report};

    struct MJob {
        plan: JobPlan,
        queue: Vec<u32>,
        notified: u64,
        counts: OutcomeCounts,
        window_start: u64,
        sent: u32,
        rate: u32,
        rolling: bool,
    }

    /// Timed-out `(job, thing)`s and `(job, criterion, canceled)` aborts.
    type ModelExpiry = (Vec<(u8, u32)>, Vec<(u8, usize, Vec<u32>)>);

    #[derive(Default)]
    struct Model {
        jobs: Vec<MJob>,
        timers: Vec<(u8, u32, ExecutionTimer)>,
    }

    impl Model {
        fn due(&mut self, now: u64) -> Vec<(u8, u32)> {
            let mut out = Vec::new();
            for (j, job) in self.jobs.iter_mut().enumerate() {
                if !job.rolling || job.queue.is_empty() {
                    continue;
                }
                if now >= job.window_start + 60 {
                    job.window_start += (now - job.window_start) / 60 * 60;
                    job.sent = 0;
                    job.rate =
                        rate_per_minute(&job.plan.rollout, job.notified, job.counts.succeeded);
                }
                while job.sent < job.rate && !job.queue.is_empty() {
                    let thing = job.queue.remove(0);
                    job.sent += 1;
                    job.notified += 1;
                    out.push((j as u8, thing));
                }
            }
            out.sort();
            out
        }

        fn after(&mut self, j: usize) -> Option<(usize, Vec<u32>)> {
            let job = &mut self.jobs[j];
            if !job.rolling {
                return None;
            }
            let c = should_abort(job.plan.abort.as_ref()?, &job.counts)?;
            job.rolling = false;
            Some((c, std::mem::take(&mut job.queue)))
        }

        fn report(
            &mut self,
            j: u8,
            thing: u32,
            report: Report,
            now: u64,
        ) -> Option<(usize, Vec<u32>)> {
            let pos = self.timers.iter().position(|t| t.0 == j && t.1 == thing);
            match report {
                Report::InProgress(step) => {
                    match pos {
                        Some(p) => {
                            self.timers[p].2.update_step(now, step);
                            if self.timers[p].2.deadline().is_none() {
                                self.timers.remove(p);
                            }
                        }
                        None => {
                            let t = ExecutionTimer::start(
                                &self.jobs[j as usize].plan.timeout,
                                now,
                                step,
                            );
                            if t.deadline().is_some() {
                                self.timers.push((j, thing, t));
                            }
                        }
                    }
                    return None;
                }
                Report::Succeeded => self.jobs[j as usize].counts.succeeded += 1,
                Report::Failed => self.jobs[j as usize].counts.failed += 1,
                Report::Rejected => self.jobs[j as usize].counts.rejected += 1,
                Report::TimedOut => self.jobs[j as usize].counts.timed_out += 1,
            }
            if let Some(p) = pos {
                self.timers.remove(p);
            }
            self.after(j as usize)
        }

        fn expire(&mut self, now: u64) -> ModelExpiry {
            let mut due: Vec<(u64, u8, u32)> = self
                .timers
                .iter()
                .filter_map(|(j, t, timer)| {
                    timer.deadline().filter(|d| *d <= now).map(|d| (d, *j, *t))
                })
                .collect();
            due.sort();
            self.timers.retain(|(_, _, timer)| !timer.is_expired(now));
            let mut timed_out = Vec::new();
            let mut aborted = Vec::new();
            for (_, j, t) in due {
                self.jobs[j as usize].counts.timed_out += 1;
                if let Some((c, q)) = self.after(j as usize) {
                    aborted.push((j, c, q));
                }
                timed_out.push((j, t));
            }
            (timed_out, aborted)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue(u8, u32),
        Advance(u64),
        Due,
        Expire,
        Report(u8, u32, u8, i8),
        Cancel(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3, 0u32..40).prop_map(|(j, t)| Op::Enqueue(j, t)),
            3 => (0u64..200).prop_map(Op::Advance),
            3 => Just(Op::Due),
            2 => Just(Op::Expire),
            6 => (0u8..3, 0u32..40, 0u8..4, -1i8..4).prop_map(|(j, t, k, s)| Op::Report(j, t, k, s)),
            1 => (0u8..3).prop_map(Op::Cancel),
        ]
    }

    fn plans() -> Vec<JobPlan> {
        let exp = |n, s| {
            ExponentialRate::new(
                2,
                15,
                RateIncreaseCriteria {
                    number_of_notified_things: n,
                    number_of_succeeded_things: s,
                },
            )
            .unwrap()
        };
        let abort = |t, h, min| {
            Some(
                AbortConfig::new(vec![
                    AbortCriterion::new(t, Percentage::from_hundredths(h).unwrap(), min).unwrap(),
                ])
                .unwrap(),
            )
        };
        vec![
            JobPlan {
                rollout: RolloutConfig::constant(3).unwrap(),
                abort: abort(AbortFailureType::All, 5000, 6),
                timeout: TimeoutConfig::new(Some(2)).unwrap(),
            },
            JobPlan {
                rollout: RolloutConfig::exponential(exp(Some(3), None), Some(9)).unwrap(),
                abort: abort(AbortFailureType::TimedOut, 3000, 3),
                timeout: TimeoutConfig::default(),
            },
            JobPlan {
                rollout: RolloutConfig::exponential(exp(Some(4), Some(2)), Some(20)).unwrap(),
                abort: None,
                timeout: TimeoutConfig::new(Some(1)).unwrap(),
            },
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn pacer_agrees_with_a_naive_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut pacer: Pacer<u8, u32> = Pacer::new();
            let mut model = Model::default();
            let mut now = 1_000u64;
            for (j, plan) in plans().into_iter().enumerate() {
                pacer.add_job(j as u8, plan.clone(), now).unwrap();
                let rate = plan.rollout.rate_at_step(0);
                model.jobs.push(MJob {
                    plan, queue: Vec::new(), notified: 0, counts: OutcomeCounts::default(),
                    window_start: now, sent: 0, rate, rolling: true,
                });
            }
            for op in ops {
                match op {
                    Op::Enqueue(j, t) => {
                        pacer.enqueue(&j, t, now).unwrap();
                        if model.jobs[j as usize].rolling {
                            model.jobs[j as usize].queue.push(t);
                        }
                    }
                    Op::Advance(s) => now += s,
                    Op::Due => {
                        let mut got: Vec<(u8, u32)> =
                            pacer.due(now).into_iter().map(|n| (n.job, n.thing)).collect();
                        got.sort();
                        prop_assert_eq!(got, model.due(now));
                    }
                    Op::Expire => {
                        let e = pacer.expire(now);
                        let got: Vec<(u8, u32)> = e.timed_out.iter().map(|t| (t.job, t.thing)).collect();
                        let got_aborts: Vec<(u8, usize, Vec<u32>)> =
                            e.aborted.into_iter().map(|a| (a.job, a.criterion, a.canceled)).collect();
                        let (want, want_aborts) = model.expire(now);
                        prop_assert_eq!(got, want);
                        prop_assert_eq!(got_aborts, want_aborts);
                    }
                    Op::Report(j, t, kind, step) => {
                        let step = StepTimeout::from_wire(match step {
                            0 => None,
                            -1 => Some(-1),
                            s => Some(i64::from(s)),
                        })
                        .unwrap();
                        let report = match kind {
                            0 => Report::InProgress(step),
                            1 => Report::Succeeded,
                            2 => Report::Failed,
                            _ => Report::Rejected,
                        };
                        let got = pacer
                            .record_outcome(&j, &t, report, now)
                            .unwrap()
                            .map(|a| (a.criterion, a.canceled));
                        prop_assert_eq!(got, model.report(j, t, report, now));
                    }
                    Op::Cancel(j) => {
                        let got = pacer.cancel(&j).unwrap();
                        let job = &mut model.jobs[j as usize];
                        job.rolling = false;
                        prop_assert_eq!(got, std::mem::take(&mut job.queue));
                    }
                }
                for j in 0..3u8 {
                    prop_assert_eq!(pacer.counts(&j), Some(model.jobs[j as usize].counts));
                    prop_assert_eq!(pacer.queued(&j), Some(model.jobs[j as usize].queue.len()));
                    for t in 0..40 {
                        let want = model
                            .timers
                            .iter()
                            .find(|x| x.0 == j && x.1 == t)
                            .and_then(|x| x.2.approximate_seconds_before_timed_out(now));
                        prop_assert_eq!(pacer.approximate_seconds_before_timed_out(&j, &t, now), want);
                    }
                }
            }
        }
    }
}

mod extremes {
    use proptest::prelude::*;
    use thingkit_jobs::rollout::{
        RolloutConfig, SchedulingConfig, StepTimeout, TimeoutConfig, parse_schedule_time,
    };
    use thingkit_jobs::schedule::{JobPlan, Pacer, Report};

    proptest! {
        #[test]
        fn pacer_never_panics_at_extreme_or_backward_times(
            times in proptest::collection::vec(any::<u64>(), 1..20),
            step in 1i64..=10_080,
        ) {
            let mut pacer: Pacer<u8, u8> = Pacer::new();
            let plan = JobPlan {
                rollout: RolloutConfig::constant(1).unwrap(),
                timeout: TimeoutConfig::new(Some(10_080)).unwrap(),
                ..JobPlan::default()
            };
            pacer.add_job(0, plan, times[0]).unwrap();
            for (i, &now) in times.iter().enumerate() {
                let thing = (i % 4) as u8;
                pacer.enqueue(&0, thing, now).unwrap();
                let _ = pacer.due(now);
                let step = StepTimeout::from_wire(Some(step)).unwrap();
                pacer.record_outcome(&0, &thing, Report::InProgress(step), now).unwrap();
                let _ = pacer.expire(now);
                let _ = pacer.approximate_seconds_before_timed_out(&0, &thing, now);
            }
        }

        #[test]
        fn schedule_validation_never_panics(now in any::<u64>(), start in any::<Option<u64>>(), end in any::<Option<u64>>(), text in ".{0,20}") {
            let _ = SchedulingConfig { start, end, end_behavior: None }.validate(now);
            let _ = parse_schedule_time(&text);
        }
    }
}
