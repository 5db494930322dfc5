//! # thingkit-audit
//!
//! Fleet security for a self-hosted AWS IoT Core: Device Defender-style detection of devices
//! that behave unexpectedly, and the fleet's key metrics (connection rate, vulnerability rate,
//! rules processing time, maintenance cost). Sans-IO: values and unix-second times in, values
//! out; no clock, no I/O.
//!
//! ```
//! use thingkit_audit::detect::{Counters, DetectorConfig, Detector, DeviceWindow, ProfileLimits};
//! use thingkit_audit::detect::{SecurityProfile, ViolationEventType};
//!
//! # fn main() -> Result<(), thingkit_audit::Error> {
//! let profile = SecurityProfile::parse(br#"{
//!     "securityProfileName": "sensors",
//!     "behaviors": [{
//!         "name": "few-auth-failures",
//!         "metric": "aws:num-authorization-failures",
//!         "criteria": {"comparisonOperator": "less-than", "value": {"count": 5}, "durationSeconds": 300}
//!     }]
//! }"#, &ProfileLimits::default())?;
//!
//! let mut detector = Detector::new(DetectorConfig::default())?;
//! detector.add_profile(profile)?;
//!
//! let counters = Counters { authorization_failures: 9, ..Counters::default() };
//! let window = DeviceWindow { thing: "sensor-7", window_end: 1_764_115_500, counters, source_ips: &[] };
//! let mut events = Vec::new();
//! detector.evaluate(&[window], &mut events)?;
//! assert_eq!(events[0].violation_event_type, ViolationEventType::InAlarm);
//! assert_eq!(detector.active_violations().count(), 1);
//!
//! // The fleet's key metrics are plain functions.
//! use thingkit_audit::metrics::{maintenance_cost, MaintenanceRates, MaintenanceUsage};
//! let cost = maintenance_cost(
//!     MaintenanceUsage { firmware_bytes: 2_000_000_000, job_messages: 3_000_000 },
//!     MaintenanceRates { per_million_messages: 1_000_000_000, per_gigabyte: 90_000_000 },
//! );
//! assert_eq!(cost.total, 3_180_000_000); // $3.00 of messages + $0.18 of transfer
//! # Ok(()) }
//! ```
//!
//! ## Modules
//!
//! - [`detect`]: security profiles, device windows, the [`detect::Detector`] and its violations.
//! - [`metrics`]: the fleet's key metrics as pure functions, each with its formula.
//!
//! ## Cargo features
//!
//! None.
//!
//! ## Specifications
//!
//! `rules-audit.md` (the project's digest of the AWS IoT Device Defender guide) C.2 Detect and
//! C.3 fleet metrics; botocore's `iot` 2015-05-28 service model for the security-profile JSON.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod detect;
mod error;
pub mod metrics;

pub use error::Error;
