//! The detector: security profiles evaluated against each period's device windows.

use std::collections::{HashMap, VecDeque};

use super::profile::{ComparisonOperator, Metric, SecurityProfile, Threshold};
use super::violation::{
    ActiveViolation, MetricValue, VerificationState, ViolationEvent, ViolationEventType,
};
use super::window::DeviceWindow;
use crate::Error;
use crate::metrics::percentile;

/// Detector configuration. Every field has a safe default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Length of the windows the broker reports, in seconds (default 300, the shortest
    /// `durationSeconds`). Every behavior's `durationSeconds` must be a multiple of it.
    pub window_seconds: u32,
    /// A device that sent no window for longer than this has its alarms invalidated by
    /// [`Detector::expire`] (default 172,800 s: two days, as AWS).
    pub invalidate_after_seconds: u64,
    /// Most violation events kept in [`Detector::history`]; the oldest are dropped first
    /// (default 10,000).
    pub max_history: usize,
    /// Most devices tracked; windows of further new devices are refused with
    /// [`Error::TooManyDevices`] (default 1,000,000).
    pub max_devices: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window_seconds: 300,
            invalidate_after_seconds: 2 * 24 * 3600,
            max_history: 10_000,
            max_devices: 1_000_000,
        }
    }
}

/// One behavior of one attached profile.
#[derive(Debug)]
struct Spec {
    profile: usize,
    behavior: usize,
    metric: Metric,
    operator: ComparisonOperator,
    /// Windows summed per datapoint (`durationSeconds / window_seconds`); 0 when the metric has
    /// no duration.
    windows: usize,
    to_alarm: u8,
    to_clear: u8,
    suppressed: bool,
}

/// The state of one (profile, behavior, device).
#[derive(Debug)]
struct State {
    /// The last `windows` window values, a ring; empty for metrics without duration.
    ring: Box<[u64]>,
    head: usize,
    filled: usize,
    /// Sum of the ring (exact: at most 2^64 windows of at most 2^64 - 1).
    sum: u128,
    violating: u8,
    conforming: u8,
    /// This period's datapoint, between the two evaluation passes.
    pending: Option<u64>,
    active: Option<Box<ActiveViolation>>,
}

impl State {
    fn new(windows: usize) -> State {
        State {
            ring: vec![0; windows].into_boxed_slice(),
            head: 0,
            filled: 0,
            sum: 0,
            violating: 0,
            conforming: 0,
            pending: None,
            active: None,
        }
    }

    fn push(&mut self, value: u64) {
        let n = self.ring.len();
        let Some(slot) = self.ring.get_mut(self.head) else {
            return;
        };
        if self.filled == n {
            self.sum -= u128::from(*slot);
        } else {
            self.filled += 1;
        }
        *slot = value;
        self.sum += u128::from(value);
        self.head += 1;
        if self.head == n {
            self.head = 0;
        }
    }

    /// Pushes `skipped` zero windows (at most a ring's worth), then `value`; the sum of the
    /// last `windows` windows once that many have been seen.
    fn accumulate(&mut self, skipped: u64, value: u64) -> Option<u64> {
        let n = self.ring.len();
        let zeros = usize::try_from(skipped).unwrap_or(usize::MAX).min(n);
        for _ in 0..zeros {
            self.push(0);
        }
        self.push(value);
        (n > 0 && self.filled == n).then(|| u64::try_from(self.sum).unwrap_or(u64::MAX))
    }
}

/// One device's states, one per attached behavior.
#[derive(Debug)]
struct Slot {
    thing: String,
    last_window_end: Option<u64>,
    /// The batch that last included this device (duplicate detection).
    mark: u64,
    states: Vec<State>,
}

/// Evaluates security profiles against device windows and keeps violations.
///
/// Feed it, once per window period, the windows of every device of the fleet for that period
/// ([`Detector::evaluate`]), and now and then the current time ([`Detector::expire`]). It returns
/// [`ViolationEvent`]s and keeps the active violations and a bounded history.
///
/// # Evaluation
///
/// For each attached behavior and each device in the batch, one datapoint per period:
///
/// - counts with a `durationSeconds` (`aws:num-messages-sent`, ...): the sum of the device's last
///   `durationSeconds / window_seconds` windows. A period the device sent no window for counts as
///   zero. No datapoint until the device has that many windows (so a 1-hour behavior starts
///   evaluating an hour after the device first reports).
/// - `aws:message-byte-size`: the largest message the device sent in the window for `less-than`
///   and `less-than-equals`, the smallest for `greater-than` and `greater-than-equals` — so a
///   datapoint violates exactly when some message did. No datapoint when it sent no message.
/// - `aws:source-ip-address`: violates when some source address lies outside the CIDR set
///   (`in-cidr-set`) or inside it (`not-in-cidr-set`); an empty address list conforms.
/// - a statistical threshold is the exact [`percentile`] (nearest rank) of the datapoints of all
///   devices of the batch that have one for the behavior; each device's datapoint is then
///   compared with it.
///
/// A datapoint for which the comparison is false violates. `consecutiveDatapointsToAlarm`
/// violating datapoints in a row raise `in-alarm`; while in alarm, violating datapoints update
/// the active violation's last value; `consecutiveDatapointsToClear` conforming datapoints in a
/// row raise `alarm-cleared`. Periods without a datapoint leave the counts as they were.
///
/// # Cost
///
/// Per device window: one hash lookup and O(attached behaviors) work (plus O(CIDRs × addresses)
/// for source-address behaviors); per batch and statistical behavior, one linear selection over
/// the batch's datapoints. Once every device has been seen, a period that raises no event
/// allocates nothing (buffers are reused), tested with a counting allocator.
///
/// Not implemented: thing-group targets (a profile applies to every device in the batch; run
/// one detector per target), metric dimensions, ML Detect.
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    profiles: Vec<SecurityProfile>,
    specs: Vec<Spec>,
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    history: VecDeque<ViolationEvent>,
    next_id: u64,
    epoch: u64,
    batch: Vec<usize>,
    scratch: Vec<u64>,
    thresholds: Vec<Option<u64>>,
}

impl Detector {
    /// A detector without profiles.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `window_seconds` is 0.
    pub fn new(config: DetectorConfig) -> Result<Detector, Error> {
        if config.window_seconds == 0 {
            return Err(Error::Config {
                field: "window_seconds",
                reason: "must be at least 1",
            });
        }
        Ok(Detector {
            config,
            profiles: Vec::new(),
            specs: Vec::new(),
            slots: Vec::new(),
            index: HashMap::new(),
            history: VecDeque::new(),
            next_id: 0,
            epoch: 0,
            batch: Vec::new(),
            scratch: Vec::new(),
            thresholds: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Attaches a profile: from the next batch on, its behaviors are evaluated for every device.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateProfile`] when a profile of that name is attached;
    /// [`Error::Invalid`] (path `behaviors[i].criteria.durationSeconds`) when a duration is not
    /// a multiple of `window_seconds`.
    pub fn add_profile(&mut self, profile: SecurityProfile) -> Result<(), Error> {
        if self.profiles.iter().any(|p| p.name == profile.name) {
            return Err(Error::DuplicateProfile { name: profile.name });
        }
        let window = self.config.window_seconds;
        let mut specs = Vec::with_capacity(profile.behaviors.len());
        for (i, b) in profile.behaviors.iter().enumerate() {
            let windows = match b.criteria.duration_seconds {
                None => 0,
                Some(d) if d % window == 0 => usize::try_from(d / window).unwrap_or(usize::MAX),
                Some(_) => {
                    return Err(Error::Invalid {
                        path: format!("behaviors[{i}].criteria.durationSeconds"),
                        reason: format!(
                            "must be a multiple of the detector's window of {window} s"
                        ),
                    });
                }
            };
            specs.push(Spec {
                profile: self.profiles.len(),
                behavior: i,
                metric: b.metric,
                operator: b.criteria.operator,
                windows,
                to_alarm: b.criteria.consecutive_datapoints_to_alarm.max(1),
                to_clear: b.criteria.consecutive_datapoints_to_clear.max(1),
                suppressed: b.suppress_alerts,
            });
        }
        self.specs.extend(specs);
        self.thresholds.resize(self.specs.len(), None);
        self.profiles.push(profile);
        Ok(())
    }

    /// Detaches the profile of this name (DeleteSecurityProfile) and returns it. Its behaviors'
    /// state and active violations go with it, without events; the history keeps what was
    /// reported. To update a profile, remove it and add the new version (its state restarts).
    /// Costs O(tracked devices).
    pub fn remove_profile(&mut self, name: &str) -> Option<SecurityProfile> {
        let index = self.profiles.iter().position(|p| p.name == name)?;
        let start = self.specs.iter().position(|s| s.profile == index);
        let len = self.specs.iter().filter(|s| s.profile == index).count();
        if let Some(start) = start {
            // A profile's specs are contiguous: add_profile appends them together.
            let range = start..start + len;
            self.specs.drain(range.clone());
            self.thresholds.drain(range.clone());
            for slot in &mut self.slots {
                let end = range.end.min(slot.states.len());
                if range.start < end {
                    slot.states.drain(range.start..end);
                }
            }
        }
        for spec in &mut self.specs {
            if spec.profile > index {
                spec.profile -= 1;
            }
        }
        Some(self.profiles.remove(index))
    }

    /// The attached profiles, in attachment order.
    pub fn profiles(&self) -> &[SecurityProfile] {
        &self.profiles
    }

    /// How many devices the detector tracks.
    pub fn devices(&self) -> usize {
        self.slots.len()
    }

    /// The violations in alarm, grouped by device.
    pub fn active_violations(&self) -> impl Iterator<Item = &ActiveViolation> {
        self.slots
            .iter()
            .flat_map(|s| s.states.iter().filter_map(|st| st.active.as_deref()))
    }

    /// The violations in alarm of one thing.
    pub fn active_violations_of<'a>(
        &'a self,
        thing: &str,
    ) -> impl Iterator<Item = &'a ActiveViolation> + 'a {
        self.index
            .get(thing)
            .and_then(|&i| self.slots.get(i))
            .into_iter()
            .flat_map(|s| s.states.iter().filter_map(|st| st.active.as_deref()))
    }

    /// The last `max_history` violation events, oldest first, suppressed ones included.
    pub fn history(&self) -> impl ExactSizeIterator<Item = &ViolationEvent> {
        self.history.iter()
    }

    /// Evaluates one period: the windows of the fleet's devices that all end at the same
    /// `window_end`. Appends the events to report to `out` (suppressed behaviors' events go to
    /// the history only).
    ///
    /// Pass every device of the period in one call: statistical thresholds are computed over
    /// the batch.
    ///
    /// # Errors
    ///
    /// Without changing any state: [`Error::Window`] when the windows do not share `window_end`,
    /// a thing appears twice, or a thing's window does not end after its previous one;
    /// [`Error::TooManyDevices`] when a new device would exceed `max_devices`.
    pub fn evaluate(
        &mut self,
        windows: &[DeviceWindow<'_>],
        out: &mut Vec<ViolationEvent>,
    ) -> Result<(), Error> {
        let Some(first) = windows.first() else {
            return Ok(());
        };
        let end = first.window_end;
        let known = self.slots.len();
        if let Err(e) = self.admit(windows, end) {
            // Forget the devices this refused batch introduced.
            for slot in self.slots.drain(known..) {
                self.index.remove(&slot.thing);
            }
            return Err(e);
        }

        // Pass 1: accumulate each device's datapoint per behavior.
        let window_seconds = u64::from(self.config.window_seconds);
        for (w, &index) in windows.iter().zip(&self.batch) {
            let slot = self
                .slots
                .get_mut(index)
                .expect("the batch only holds positions of existing slots");
            let skipped = slot
                .last_window_end
                .map_or(0, |last| ((end - last) / window_seconds).saturating_sub(1));
            slot.last_window_end = Some(end);
            while slot.states.len() < self.specs.len() {
                let windows = self
                    .specs
                    .get(slot.states.len())
                    .map_or(0, |spec| spec.windows);
                slot.states.push(State::new(windows));
            }
            for (spec, state) in self.specs.iter().zip(slot.states.iter_mut()) {
                let c = &w.counters;
                state.pending = match spec.metric {
                    Metric::MessageByteSize => {
                        (c.messages_sent > 0).then_some(match spec.operator {
                            ComparisonOperator::GreaterThan
                            | ComparisonOperator::GreaterThanEquals => c.min_message_bytes,
                            _ => c.max_message_bytes,
                        })
                    }
                    Metric::SourceIpAddress => None,
                    Metric::NumMessagesSent => state.accumulate(skipped, c.messages_sent),
                    Metric::NumMessagesReceived => state.accumulate(skipped, c.messages_received),
                    Metric::NumAuthorizationFailures => {
                        state.accumulate(skipped, c.authorization_failures)
                    }
                    Metric::NumConnectionAttempts => {
                        state.accumulate(skipped, c.connection_attempts)
                    }
                    Metric::NumDisconnects => state.accumulate(skipped, c.disconnects),
                };
            }
        }

        // Statistical thresholds over the batch's datapoints.
        for (i, (spec, threshold)) in self
            .specs
            .iter()
            .zip(self.thresholds.iter_mut())
            .enumerate()
        {
            let behavior = self
                .profiles
                .get(spec.profile)
                .and_then(|p| p.behaviors.get(spec.behavior));
            let Some(Threshold::Statistic(stat)) = behavior.map(|b| &b.criteria.threshold) else {
                continue;
            };
            self.scratch.clear();
            for &index in &self.batch {
                if let Some(v) = self
                    .slots
                    .get(index)
                    .and_then(|s| s.states.get(i))
                    .and_then(|st| st.pending)
                {
                    self.scratch.push(v);
                }
            }
            *threshold = percentile(&mut self.scratch, stat.per_ten_thousand());
        }

        // Pass 2: compare and move the alarm state machines.
        let mut emitter = Emitter {
            history: &mut self.history,
            max_history: self.config.max_history,
            out,
        };
        for (w, &index) in windows.iter().zip(&self.batch) {
            let slot = self
                .slots
                .get_mut(index)
                .expect("the batch only holds positions of existing slots");
            for ((spec, state), threshold) in self
                .specs
                .iter()
                .zip(slot.states.iter_mut())
                .zip(&self.thresholds)
            {
                let Some(profile) = self.profiles.get(spec.profile) else {
                    continue;
                };
                let Some(behavior) = profile.behaviors.get(spec.behavior) else {
                    continue;
                };
                let datapoint = match &behavior.criteria.threshold {
                    Threshold::Cidrs(cidrs) => {
                        let inside =
                            |ip: &&std::net::IpAddr| cidrs.iter().any(|c| c.contains(**ip));
                        let offending = match spec.operator {
                            ComparisonOperator::NotInCidrSet => w.source_ips.iter().find(inside),
                            _ => w.source_ips.iter().find(|ip| !inside(ip)),
                        };
                        match offending {
                            Some(ip) => Some(Err(MetricValue::SourceIp(*ip))),
                            None => Some(Ok(w
                                .source_ips
                                .first()
                                .map(|ip| MetricValue::SourceIp(*ip)))),
                        }
                    }
                    Threshold::Count(t) => state.pending.map(|v| judge(spec.operator, v, *t)),
                    Threshold::Statistic(_) => state
                        .pending
                        .zip(*threshold)
                        .map(|(v, t)| judge(spec.operator, v, t)),
                };
                match datapoint {
                    None => {}
                    Some(Err(value)) => {
                        state.conforming = 0;
                        state.violating = state.violating.saturating_add(1);
                        if let Some(active) = state.active.as_deref_mut() {
                            active.last_violation_value = value;
                            active.last_violation_time = end;
                        } else if state.violating >= spec.to_alarm {
                            let active = ActiveViolation {
                                violation_id: format!("{end:016x}{:016x}", self.next_id),
                                thing_name: slot.thing.clone(),
                                security_profile_name: profile.name.clone(),
                                behavior: behavior.clone(),
                                last_violation_value: value,
                                last_violation_time: end,
                                violation_start_time: end,
                                verification_state: VerificationState::Unknown,
                            };
                            self.next_id += 1;
                            emitter.emit(
                                event(&active, ViolationEventType::InAlarm, Some(value), end),
                                spec.suppressed,
                            );
                            state.active = Some(Box::new(active));
                        }
                    }
                    Some(Ok(value)) => {
                        state.violating = 0;
                        if state.active.is_some() {
                            state.conforming = state.conforming.saturating_add(1);
                            if state.conforming >= spec.to_clear {
                                state.conforming = 0;
                                if let Some(active) = state.active.take() {
                                    emitter.emit(
                                        event(
                                            &active,
                                            ViolationEventType::AlarmCleared,
                                            value,
                                            end,
                                        ),
                                        spec.suppressed,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Pass 0 of [`Detector::evaluate`]: validates the batch and finds (or makes) each
    /// device's slot, recording the positions in `self.batch`.
    fn admit(&mut self, windows: &[DeviceWindow<'_>], end: u64) -> Result<(), Error> {
        self.epoch += 1;
        self.batch.clear();
        // Pass 0: validate the batch and find (or make) each device's slot.
        for w in windows {
            let refuse = |reason| Error::Window {
                thing: w.thing.to_owned(),
                window_end: w.window_end,
                reason,
            };
            if w.window_end != end {
                return Err(refuse("windows of one batch must share window_end"));
            }
            let index = match self.index.get(w.thing) {
                Some(&i) => i,
                None => {
                    if self.slots.len() >= self.config.max_devices {
                        return Err(Error::TooManyDevices {
                            limit: self.config.max_devices,
                        });
                    }
                    self.slots.push(Slot {
                        thing: w.thing.to_owned(),
                        last_window_end: None,
                        mark: 0,
                        states: Vec::new(),
                    });
                    self.index.insert(w.thing.to_owned(), self.slots.len() - 1);
                    self.slots.len() - 1
                }
            };
            let slot = self
                .slots
                .get_mut(index)
                .expect("the index only holds positions of existing slots");
            if slot.mark == self.epoch {
                return Err(refuse("the thing appears twice in the batch"));
            }
            if slot.last_window_end.is_some_and(|last| last >= end) {
                return Err(refuse("window does not end after the thing's previous one"));
            }
            slot.mark = self.epoch;
            self.batch.push(index);
        }
        Ok(())
    }

    /// Invalidates the alarms of devices that sent no window for longer than
    /// `invalidate_after_seconds` before `now` (unix seconds), appending `alarm-invalidated`
    /// events to `out`. The devices' consecutive-datapoint counts restart from zero.
    ///
    /// Costs O(tracked devices); call it once per period or less often.
    pub fn expire(&mut self, now: u64, out: &mut Vec<ViolationEvent>) {
        let mut emitter = Emitter {
            history: &mut self.history,
            max_history: self.config.max_history,
            out,
        };
        for slot in &mut self.slots {
            let Some(last) = slot.last_window_end else {
                continue;
            };
            if now.saturating_sub(last) <= self.config.invalidate_after_seconds {
                continue;
            }
            for (spec, state) in self.specs.iter().zip(slot.states.iter_mut()) {
                state.violating = 0;
                state.conforming = 0;
                if let Some(active) = state.active.take() {
                    emitter.emit(
                        event(&active, ViolationEventType::AlarmInvalidated, None, now),
                        spec.suppressed,
                    );
                }
            }
        }
    }
}

/// A numeric datapoint: `Ok` (conforms, with its value) or `Err` (violates, with its value).
fn judge(
    operator: ComparisonOperator,
    value: u64,
    threshold: u64,
) -> Result<Option<MetricValue>, MetricValue> {
    if operator.conforms(value, threshold) {
        Ok(Some(MetricValue::Count(value)))
    } else {
        Err(MetricValue::Count(value))
    }
}

fn event(
    active: &ActiveViolation,
    kind: ViolationEventType,
    metric_value: Option<MetricValue>,
    time: u64,
) -> ViolationEvent {
    ViolationEvent {
        violation_id: active.violation_id.clone(),
        thing_name: active.thing_name.clone(),
        security_profile_name: active.security_profile_name.clone(),
        behavior: active.behavior.clone(),
        metric_value,
        violation_event_type: kind,
        violation_event_time: time,
        verification_state: active.verification_state,
        suppressed: false,
    }
}

struct Emitter<'a> {
    history: &'a mut VecDeque<ViolationEvent>,
    max_history: usize,
    out: &'a mut Vec<ViolationEvent>,
}

impl Emitter<'_> {
    fn emit(&mut self, mut event: ViolationEvent, suppressed: bool) {
        event.suppressed = suppressed;
        if !suppressed {
            self.out.push(event.clone());
        }
        if self.max_history == 0 {
            return;
        }
        while self.history.len() >= self.max_history {
            self.history.pop_front();
        }
        self.history.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sums_the_last_windows_and_fills_gaps_with_zeros() {
        let mut s = State::new(3);
        assert_eq!(s.accumulate(0, 5), None);
        assert_eq!(s.accumulate(0, 6), None);
        assert_eq!(s.accumulate(0, 7), Some(18));
        assert_eq!(s.accumulate(0, 1), Some(14));
        assert_eq!(s.accumulate(1, 2), Some(3)); // 1, 0, 2
        assert_eq!(s.accumulate(u64::MAX, 4), Some(4));
        assert_eq!(s.accumulate(0, u64::MAX), Some(u64::MAX)); // saturates
    }

    #[test]
    fn a_ring_of_nothing_yields_no_datapoint() {
        let mut s = State::new(0);
        assert_eq!(s.accumulate(3, 9), None);
    }
}
