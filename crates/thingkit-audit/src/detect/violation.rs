//! Violations: the detector's output, in AWS's `ActiveViolation` and `ViolationEvent` shapes.

use std::net::IpAddr;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::profile::Behavior;

/// The value of a metric at a datapoint (AWS `MetricValue`, the members thingkit produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricValue {
    /// A count or a size; serialises as `{"count": n}`.
    Count(u64),
    /// The source address that violated a CIDR behavior; serialises as
    /// `{"cidrs": ["203.0.113.7/32"]}` (a `/128` for IPv6).
    SourceIp(IpAddr),
}

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            MetricValue::Count(n) => map.serialize_entry("count", n)?,
            MetricValue::SourceIp(ip) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                map.serialize_entry("cidrs", &[format!("{ip}/{bits}")])?;
            }
        }
        map.end()
    }
}

/// How a violation was verified (AWS `VerificationState`). The detector leaves it
/// [`VerificationState::Unknown`]; operators set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerificationState {
    /// `FALSE_POSITIVE`.
    FalsePositive,
    /// `BENIGN_POSITIVE`.
    BenignPositive,
    /// `TRUE_POSITIVE`.
    TruePositive,
    /// `UNKNOWN`.
    #[default]
    Unknown,
}

/// What happened to a violation (AWS `ViolationEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationEventType {
    /// `in-alarm`: `consecutiveDatapointsToAlarm` violating datapoints in a row.
    InAlarm,
    /// `alarm-cleared`: `consecutiveDatapointsToClear` conforming datapoints in a row.
    AlarmCleared,
    /// `alarm-invalidated`: the device sent no data for longer than
    /// `DetectorConfig::invalidate_after_seconds` (two days).
    AlarmInvalidated,
}

/// A violation that is in alarm (AWS `ActiveViolation`), serialised with AWS's member names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveViolation {
    /// Identifies the violation from `in-alarm` to `alarm-cleared`/`alarm-invalidated`: 32
    /// lowercase hex digits, unique within one detector.
    pub violation_id: String,
    /// The thing.
    pub thing_name: String,
    /// The security profile.
    pub security_profile_name: String,
    /// The behavior violated.
    pub behavior: Behavior,
    /// The value of the latest violating datapoint.
    pub last_violation_value: MetricValue,
    /// When the latest violating datapoint's window ended (unix seconds).
    pub last_violation_time: u64,
    /// When the window of the datapoint that raised the alarm ended (unix seconds).
    pub violation_start_time: u64,
    /// Always `UNKNOWN` when the detector raises it.
    pub verification_state: VerificationState,
}

/// A change of a violation (AWS `ViolationEvent`), serialised with AWS's member names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationEvent {
    /// The violation's id (the same for its `in-alarm` and its clearing event).
    pub violation_id: String,
    /// The thing.
    pub thing_name: String,
    /// The security profile.
    pub security_profile_name: String,
    /// The behavior.
    pub behavior: Behavior,
    /// The datapoint that caused the event; absent for `alarm-invalidated`, and for a clearing
    /// datapoint without a value (a source-address behavior with no connection in the window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_value: Option<MetricValue>,
    /// What happened.
    pub violation_event_type: ViolationEventType,
    /// When: the end of the datapoint's window, or the time passed to `Detector::expire`.
    pub violation_event_time: u64,
    /// Always `UNKNOWN` when the detector raises it.
    pub verification_state: VerificationState,
    /// The behavior has `suppressAlerts`: the event is kept in the history but was not
    /// reported as an alert. Not an AWS member; not serialised.
    #[serde(skip)]
    pub suppressed: bool,
}
