//! The detect loop of `thingkit serve` (Device Defender Detect): the security profiles listed
//! in `[detect] profiles` of thingkit.toml, evaluated once a minute on the broker's per-device
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

/// A detector with the profiles of `config.detect.profiles`; `None` when there are none.
pub fn detector(config: &ServeConfig) -> Result<Option<Arc<Mutex<Detector>>>, Failure> {
    if config.detect.profiles.is_empty() {
        return Ok(None);
    }
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
    Ok(Some(Arc::new(Mutex::new(detector))))
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
        assert!(detector(&config).unwrap().is_none(), "no profiles, no loop");
        config.detect.profiles = vec![path];
        let detector = detector(&config).unwrap().unwrap();

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
}
