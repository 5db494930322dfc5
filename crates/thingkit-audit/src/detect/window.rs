//! What the broker counted for one device over one window: the detector's input.

use std::net::IpAddr;

/// Per-device counters over one window, as the broker counts them.
///
/// Sizes are in bytes of the PUBLISH payload the device sent (what `aws:message-byte-size`
/// measures); when `messages_sent` is 0 the two size fields are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// PUBLISH packets the device sent to the broker (`aws:num-messages-sent`).
    pub messages_sent: u64,
    /// PUBLISH packets the broker delivered to the device (`aws:num-messages-received`).
    pub messages_received: u64,
    /// Payload bytes the device sent. No cloud-side metric compares it; it travels with the
    /// window for reports and the dashboard.
    pub bytes_sent: u64,
    /// Payload bytes the broker delivered to the device (like `bytes_sent`, not compared).
    pub bytes_received: u64,
    /// Size of the largest message the device sent.
    pub max_message_bytes: u64,
    /// Size of the smallest message the device sent.
    pub min_message_bytes: u64,
    /// Requests of the device the broker denied (`aws:num-authorization-failures`).
    pub authorization_failures: u64,
    /// Connection attempts, successful or not (`aws:num-connection-attempts`).
    pub connection_attempts: u64,
    /// Disconnects for any reason (`aws:num-disconnects`).
    pub disconnects: u64,
}

/// One device's counters for the window that ended at `window_end`.
///
/// Borrowed, so the broker can hand over windows without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWindow<'a> {
    /// The thing's name (the MQTT client id under which it connected).
    pub thing: &'a str,
    /// End of the window, unix seconds. The window covers the
    /// `DetectorConfig::window_seconds` before it.
    pub window_end: u64,
    /// The counters.
    pub counters: Counters,
    /// Distinct addresses the device connected from in the window (`aws:source-ip-address`).
    pub source_ips: &'a [IpAddr],
}
