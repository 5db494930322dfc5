//! Detect: security profiles of expected device behavior, evaluated per window against what the
//! broker counted, raising and clearing violations (AWS IoT Device Defender Detect, cloud-side
//! metrics).
//!
//! - [`SecurityProfile`] parses the JSON `CreateSecurityProfile` takes (botocore `iot`
//!   2015-05-28 shapes `Behavior`, `BehaviorCriteria`, `MetricValue`, `StatisticalThreshold`),
//!   validated once: names, operators valid for the metric, durations AWS allows, datapoint
//!   counts 1–10, CIDRs parsed with `std::net`. Device-side and custom metrics, ML Detect and
//!   metric dimensions are refused with [`Error::Unsupported`](crate::Error::Unsupported).
//! - [`DeviceWindow`] is the input: one device's [`Counters`] for one window.
//! - [`Detector`] holds the profiles and the per-(profile, behavior, device) state, and turns
//!   each period's windows into [`ViolationEvent`]s; it keeps the [`ActiveViolation`]s and a
//!   bounded history.
//!
//! Spec: `rules-audit.md` C.2.

mod detector;
mod profile;
mod violation;
mod window;

pub use detector::{Detector, DetectorConfig};
pub use profile::{
    Behavior, Cidr, ComparisonOperator, Criteria, Metric, ProfileLimits, SecurityProfile,
    Statistic, Threshold,
};
pub use violation::{
    ActiveViolation, MetricValue, VerificationState, ViolationEvent, ViolationEventType,
};
pub use window::{Counters, DeviceWindow};
