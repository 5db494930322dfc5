//! The detect loop of `thingkit serve` (Device Defender Detect): the security profiles listed
//! in `[detect] profiles` of thingkit.toml and those made through the API
//! (`CreateSecurityProfile`, evaluated once attached to at least one target; every device is
//! evaluated against every profile in force), run once a minute on the broker's per-device
//! activity (`take_activity`), with one-minute windows.
//!
//! Each violation event (`IN_ALARM`, `ALARM_CLEARED`, `ALARM_INVALIDATED`) is published as its
//! JSON (botocore's `ViolationEvent` shape) at QoS 1 on the topic
//! `$aws/things/<thing>/defender/alarms` (thingkit's own topic: AWS sends alarms to SNS; a
//! device's policy must allow it to subscribe there). The detector keeps a bounded history of
//! events (`DetectorConfig::max_history`) and the active violations, which the dashboard shows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thingkit_audit::detect::{
    Counters, Detector, DetectorConfig, DeviceWindow, ProfileLimits, SecurityProfile,
};
use thingkit_broker::{ActivitySource, ActivityWindow, BrokerPublisher};
use thingkit_mqtt::{PacketProperties, QoS, TopicName};

use crate::Failure;
use crate::config::ServeConfig;

/// The windows the loop takes, seconds.
pub const WINDOW_SECONDS: u32 = 60;

/// The topic a thing's violation events are published on.
pub fn alarm_topic(thing: &str) -> String {
    format!("$aws/things/{thing}/defender/alarms")
}

/// A detector with the profiles of `config.detect.profiles` (the API's are added by
/// [`ApiProfiles`]).
pub fn detector(config: &ServeConfig) -> Result<Arc<Mutex<Detector>>, Failure> {
    let mut detector = Detector::new(DetectorConfig {
        window_seconds: WINDOW_SECONDS,
        ..DetectorConfig::default()
    })?;
    for path in &config.detect.profiles {
        let bytes = std::fs::read(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        let profile = SecurityProfile::parse(&bytes, &ProfileLimits::default())
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        detector
            .add_profile(profile)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    }
    Ok(Arc::new(Mutex::new(detector)))
}

/// The control plane's view of the detector: the profiles made through the API go into it,
/// and `ListActiveViolations` / `ListViolationEvents` read it.
pub struct ApiProfiles {
    /// The server's detector.
    pub detector: Arc<Mutex<Detector>>,
    /// The names of the profiles the API put in (the configuration's are left alone).
    installed: Mutex<Vec<String>>,
}

impl ApiProfiles {
    /// The API's profiles in `detector`.
    pub fn new(detector: Arc<Mutex<Detector>>) -> ApiProfiles {
        ApiProfiles {
            detector,
            installed: Mutex::new(Vec::new()),
        }
    }
}

impl thingkit_api::audit::DetectHook for ApiProfiles {
    fn profiles_changed(&self, profiles: &[(SecurityProfile, Vec<String>)]) {
        let (Ok(mut detector), Ok(mut installed)) = (self.detector.lock(), self.installed.lock())
        else {
            return;
        };
        for name in installed.drain(..) {
            detector.remove_profile(&name);
        }
        for (profile, targets) in profiles {
            if targets.is_empty() {
                continue; // AWS evaluates a profile once it is attached
            }
            let name = profile.name.clone();
            match detector.add_profile(profile.clone()) {
                Ok(()) => installed.push(name),
                Err(e) => {
                    tracing::warn!(profile = %name, error = %e, "detect: profile not installed")
                }
            }
        }
    }

    fn active_violations(&self) -> Vec<thingkit_audit::detect::ActiveViolation> {
        self.detector
            .lock()
            .map(|d| d.active_violations().cloned().collect())
            .unwrap_or_default()
    }

    fn violation_events(
        &self,
        start: u64,
        end: u64,
    ) -> Vec<thingkit_audit::detect::ViolationEvent> {
        self.detector
            .lock()
            .map(|d| {
                d.history()
                    .filter(|e| (start..=end).contains(&e.violation_event_time))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Evaluates one window of activity; the events raised, as `(topic, JSON payload)`.
pub fn evaluate(detector: &Mutex<Detector>, window: &ActivityWindow) -> Vec<(String, String)> {
    let ips: Vec<Vec<std::net::IpAddr>> = window
        .devices
        .iter()
        .map(|d| d.source_ips.clone())
        .collect();
    let windows: Vec<DeviceWindow<'_>> = window
        .devices
        .iter()
        .zip(&ips)
        .map(|(d, ips)| DeviceWindow {
            thing: &d.device,
            window_end: window.end,
            counters: Counters {
                messages_sent: d.messages_sent,
                messages_received: d.messages_received,
                bytes_sent: d.bytes_sent,
                bytes_received: d.bytes_received,
                max_message_bytes: d.largest_message,
                authorization_failures: d.authorization_failures,
                connection_attempts: d.connection_attempts,
                disconnects: d.disconnects,
                ..Counters::default()
            },
            source_ips: ips,
        })
        .collect();
    let mut events = Vec::new();
    let Ok(mut detector) = detector.lock() else {
        return Vec::new();
    };
    if let Err(e) = detector.evaluate(&windows, &mut events) {
        tracing::warn!(error = %e, "detect: a window was refused");
    }
    events
        .iter()
        .filter_map(|e| {
            let payload = serde_json::to_string(e).ok()?;
            Some((alarm_topic(&e.thing_name), payload))
        })
        .collect()
}

/// Once a minute: take the broker's activity, evaluate it, publish the events. Runs until
/// aborted.
pub async fn run(
    detector: Arc<Mutex<Detector>>,
    activity: ActivitySource,
    publisher: BrokerPublisher,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(u64::from(WINDOW_SECONDS))).await;
        let now = crate::report::now().max(0) as u64;
        let window = activity.take_activity(now);
        for (topic, payload) in evaluate(&detector, &window) {
            let Ok(name) = TopicName::new(&topic) else {
                tracing::warn!(topic, "detect: not a valid alarm topic");
                continue;
            };
            if let Err(e) = publisher
                .publish(
                    name,
                    payload.into(),
                    QoS::AtLeastOnce,
                    false,
                    PacketProperties::default(),
                )
                .await
            {
                tracing::warn!(topic, error = %e, "detect: alarm not published");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingkit_broker::DeviceActivity;

    const PROFILE: &str = r#"{"securityProfileName": "sensors", "behaviors": [{
        "name": "few-auth-failures", "metric": "aws:num-authorization-failures",
        "criteria": {"comparisonOperator": "less-than", "value": {"count": 5},
                     "durationSeconds": 300}}]}"#;

    #[test]
    fn a_violation_is_published_on_the_things_alarm_topic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sensors.json");
        std::fs::write(&path, PROFILE).unwrap();
        let mut config = ServeConfig::default();
        assert_eq!(
            detector(&config)
                .unwrap()
                .lock()
                .unwrap()
                .active_violations()
                .count(),
            0
        );
        config.detect.profiles = vec![path];
        let detector = detector(&config).unwrap();

        let mut device = DeviceActivity::default();
        device.device = "sensor-7".into();
        device.thing = true;
        device.authorization_failures = 9;
        // A 300 s behavior has its first datapoint after five one-minute windows.
        let mut events = Vec::new();
        for i in 0..5 {
            let mut window = ActivityWindow::default();
            window.start = 1_764_115_140 + 60 * i;
            window.end = window.start + 60;
            window.devices = vec![device.clone()];
            events = evaluate(&detector, &window);
            if i < 4 {
                assert!(events.is_empty(), "{events:?}");
            }
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, "$aws/things/sensor-7/defender/alarms");
        let event: serde_json::Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(event["violationEventType"], "in-alarm", "{event}");
        assert_eq!(detector.lock().unwrap().active_violations().count(), 1);
    }

    /// Profiles made through the API join the configuration's once attached, leave when
    /// detached or deleted, and the API reads the detector's violations.
    #[test]
    fn the_apis_profiles_are_evaluated_once_attached() {
        use thingkit_api::audit::DetectHook;
        let config = ServeConfig::default();
        let api = ApiProfiles::new(detector(&config).unwrap());
        let profile = |name: &str| {
            SecurityProfile::parse(
                PROFILE.replace("sensors", name).as_bytes(),
                &ProfileLimits::default(),
            )
            .unwrap()
        };
        let all = "arn:aws:iot:eu-central-1:123456789012:all/registered-things".to_string();
        api.profiles_changed(&[
            (profile("attached"), vec![all.clone()]),
            (profile("unattached"), vec![]),
        ]);
        let mut device = DeviceActivity::default();
        device.device = "sensor-9".into();
        device.authorization_failures = 9;
        for i in 0..5 {
            let mut window = ActivityWindow::default();
            window.end = 1_764_115_200 + 60 * i;
            window.devices = vec![device.clone()];
            evaluate(&api.detector, &window);
        }
        let active = api.active_violations();
        assert_eq!(active.len(), 1, "only the attached profile is evaluated");
        assert_eq!(active[0].security_profile_name, "attached");
        assert_eq!(api.violation_events(0, u64::MAX).len(), 1);
        assert!(api.violation_events(0, 1_000).is_empty());
        // Detached: the profile and its violation go.
        api.profiles_changed(&[(profile("attached"), vec![])]);
        assert!(api.active_violations().is_empty());
    }
}
