//! Fleet activity the broker records for Device Defender audit and detect, in bounded memory.
//!
//! - The **connection log** ([`ConnectionRecord`]): one record per accepted connection, what
//!   the audit checks `DEVICE_CERTIFICATE_SHARED_CHECK` (one certificate, concurrent
//!   connections) and `CONFLICTING_CLIENT_IDS_CHECK` (one client ID, a connection taken over:
//!   `DUPLICATE_CLIENTID`) read over their window (on demand: the 31 days before the run).
//!   Kept for [`super::BrokerConfig::connection_log_retention`] after the connection closed,
//!   at most [`super::BrokerConfig::max_connection_records`] records (the oldest dropped first,
//!   counted in [`ActivityCounters::connection_records_dropped`]).
//! - **Per-device activity** ([`DeviceActivity`]): the cloud-side detect metrics
//!   (`aws:num-messages-sent`, `aws:num-messages-received`, `aws:message-byte-size`,
//!   `aws:num-authorization-failures`, `aws:num-connection-attempts`, `aws:num-disconnects`,
//!   `aws:source-ip-address`) summed per device over a window that ends at each
//!   [`super::BrokerHandle::take_activity`]. The counters live in the connection task (plain
//!   integers, no atomics or locks per message) and are folded into the shared table under its
//!   lock at most once per [`FOLD_INTERVAL`] per connection, and at disconnect.
//! - **Maintenance traffic** ([`MaintenanceCounters`]): job messages and firmware stream bytes,
//!   for the maintenance-cost metric.
//! - **Rules latency**: publish-to-action latencies of the rules engine, the last
//!   [`RULES_LATENCY_SAMPLES`] of them.
//!
//! Spec: `rules-audit.md` C.1 (the two connection-based checks and their windows), C.2 (the
//! cloud-side metrics), C.3 (disconnect reasons, connection rate).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thingkit_provision::CertificateId;

use crate::DisconnectReason;

/// Distinct source IP addresses kept per device and window; further ones are not recorded
/// (the window's [`DeviceActivity::source_ips_truncated`] says so).
pub const MAX_SOURCE_IPS: usize = 8;

/// How often at most a connection folds its activity counters into the broker's table: a
/// device's activity is visible to [`super::BrokerHandle::take_activity`] within about this
/// long (and at once when it disconnects).
pub const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// How many rules-engine latency samples [`super::BrokerHandle::rules_latencies`] keeps (the
/// most recent ones; 256 KiB).
pub const RULES_LATENCY_SAMPLES: usize = 65_536;

/// One accepted connection: who (client ID, certificate, thing), from where, when, and why it
/// ended. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionRecord {
    /// The MQTT client ID (the one the broker assigned, for an empty one).
    pub client_id: String,
    /// The principal: the certificate ID (64 hex digits) of the mutual TLS client certificate.
    pub principal: String,
    /// The thing, when the client ID names a thing the certificate is attached to (AWS takes
    /// the thing name from the client ID).
    pub thing_name: Option<String>,
    /// The peer's IP address.
    pub source_ip: IpAddr,
    /// The lifecycle events' `sessionIdentifier` of this connection.
    pub session_identifier: String,
    /// When CONNECT was accepted.
    pub connected_at: u64,
    /// When the connection closed; `None` while it is open.
    pub disconnected_at: Option<u64>,
    /// Why it closed (AWS's `disconnectReason`; `DUPLICATE_CLIENTID` when another connection
    /// with the same client ID took it over); `None` while it is open.
    pub disconnect_reason: Option<DisconnectReason>,
}

/// The cloud-side detect metrics of one device over one [`ActivityWindow`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceActivity {
    /// The device: its thing name when its connections are of an attached thing, else its
    /// client ID. The two coincide (AWS takes the thing name from the client ID), so one
    /// device never appears twice; [`DeviceActivity::thing`] says which it is.
    pub device: String,
    /// Whether [`DeviceActivity::device`] is a thing name (some accepted connection of it
    /// named a thing its certificate is attached to).
    pub thing: bool,
    /// `aws:num-messages-sent`: PUBLISH packets from the device the broker accepted.
    pub messages_sent: u64,
    /// `aws:num-messages-received`: messages the broker wrote to the device.
    pub messages_received: u64,
    /// Topic and payload bytes of the messages sent.
    pub bytes_sent: u64,
    /// Topic and payload bytes of the messages received.
    pub bytes_received: u64,
    /// `aws:message-byte-size`: the largest message (topic and payload bytes) it sent.
    pub largest_message: u64,
    /// `aws:num-authorization-failures`: requests its policies denied (connect, publish,
    /// subscribe, receive).
    pub authorization_failures: u64,
    /// `aws:num-connection-attempts`: CONNECTs, accepted and refused.
    pub connection_attempts: u64,
    /// The refused ones among [`DeviceActivity::connection_attempts`].
    pub refused_connection_attempts: u64,
    /// `aws:num-disconnects`: connections of it that closed.
    pub disconnects: u64,
    /// `aws:source-ip-address`: the distinct addresses it connected (or tried to) from, at
    /// most [`MAX_SOURCE_IPS`], in the order first seen.
    pub source_ips: Vec<IpAddr>,
    /// More addresses were seen than [`MAX_SOURCE_IPS`].
    pub source_ips_truncated: bool,
}

/// What [`super::BrokerHandle::take_activity`] hands out: every device with activity between
/// `start` and `end` (Unix seconds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityWindow {
    /// When the window began: the previous take (or the broker's start).
    pub start: u64,
    /// When it ended: the time given to the take.
    pub end: u64,
    /// The devices, ordered by [`DeviceActivity::device`].
    pub devices: Vec<DeviceActivity>,
    /// Updates lost in this window because the table held
    /// [`super::BrokerConfig::max_activity_devices`] devices already: each fold or connection
    /// attempt of a device with no room counts once.
    pub overflow: u64,
}

/// Job and firmware-delivery traffic since the broker started, for the maintenance-cost
/// metric. Monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceCounters {
    /// Messages devices published on job topics (`$aws/things/{thing}/jobs/...`) that the
    /// broker accepted.
    pub job_messages_in: u64,
    /// Messages on job topics the broker delivered: answers of the jobs service and routed
    /// copies (notifications), one per receiving session.
    pub job_messages_out: u64,
    /// Stream data messages (`$aws/things/{thing}/streams/{id}/data/...`) the broker answered
    /// with (MQTT-based file delivery: firmware images).
    pub stream_messages_out: u64,
    /// Payload bytes of those stream data messages.
    pub stream_bytes_out: u64,
}

/// The sizes and losses of the activity records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityCounters {
    /// Records in the connection log now.
    pub connection_records: usize,
    /// Records dropped (oldest first) because the log held
    /// [`super::BrokerConfig::max_connection_records`]; since the start.
    pub connection_records_dropped: u64,
    /// Records removed because they ended more than
    /// [`super::BrokerConfig::connection_log_retention`] ago; since the start.
    pub connection_records_expired: u64,
    /// Devices in the current activity window.
    pub devices: usize,
    /// Updates lost to the device cap, since the start (the sum of the windows' overflow).
    pub device_overflow: u64,
}

/// A cheap [`Clone`] reader of a running broker's activity records, usable after the
/// [`super::BrokerHandle`] moved elsewhere (an audit scheduler, the control-plane API): see
/// [`super::BrokerHandle::activity`]. Each method is the [`super::BrokerHandle`] method of the
/// same name.
#[derive(Clone)]
pub struct ActivitySource {
    shared: Arc<super::Shared>,
}

impl std::fmt::Debug for ActivitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivitySource").finish_non_exhaustive()
    }
}

impl ActivitySource {
    pub(crate) fn new(shared: Arc<super::Shared>) -> Self {
        ActivitySource { shared }
    }

    /// See [`super::BrokerHandle::connection_log`].
    pub fn connection_log(&self, since_unix: u64) -> Vec<ConnectionRecord> {
        self.shared
            .activity
            .connection_log(since_unix, super::unix_now())
    }

    /// See [`super::BrokerHandle::take_activity`] (one reader: a take drains the window for
    /// every clone).
    pub fn take_activity(&self, now_unix: u64) -> ActivityWindow {
        self.shared.activity.take(now_unix)
    }

    /// See [`super::BrokerHandle::maintenance_counters`].
    pub fn maintenance_counters(&self) -> MaintenanceCounters {
        self.shared.activity.maintenance()
    }

    /// See [`super::BrokerHandle::rules_latencies`].
    pub fn rules_latencies(&self) -> Vec<u32> {
        self.shared
            .rules
            .as_ref()
            .map(|r| r.action_latencies())
            .unwrap_or_default()
    }

    /// See [`super::BrokerHandle::activity_counters`].
    pub fn activity_counters(&self) -> ActivityCounters {
        self.shared.activity.counters()
    }
}

/// The activity counters of one connection, kept in its task and folded into the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) largest: u64,
    pub(crate) auth_failures: u64,
}

impl Counts {
    /// Nothing to fold.
    pub(crate) fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    /// Counts one accepted message of `bytes` from the device.
    pub(crate) fn sent(&mut self, bytes: u64) {
        self.sent += 1;
        self.bytes_sent += bytes;
        self.largest = self.largest.max(bytes);
    }

    /// Counts one message of `bytes` written to the device.
    pub(crate) fn received(&mut self, bytes: u64) {
        self.received += 1;
        self.bytes_received += bytes;
    }

    fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.received += other.received;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.largest = self.largest.max(other.largest);
        self.auth_failures += other.auth_failures;
    }
}

/// One device's row in the current window.
#[derive(Debug, Default)]
struct DeviceEntry {
    thing: bool,
    counts: Counts,
    attempts: u64,
    refused: u64,
    disconnects: u64,
    ips: Vec<IpAddr>,
    ips_truncated: bool,
}

impl DeviceEntry {
    fn saw(&mut self, ip: IpAddr) {
        if self.ips.contains(&ip) {
            return;
        }
        if self.ips.len() < MAX_SOURCE_IPS {
            self.ips.push(ip);
        } else {
            self.ips_truncated = true;
        }
    }
}

/// The per-device table of the current window.
#[derive(Debug)]
struct DeviceTable {
    devices: HashMap<Arc<str>, DeviceEntry>,
    max: usize,
    overflow: u64,
    overflow_total: u64,
    start: u64,
}

impl DeviceTable {
    /// The row of `device`, made if there is room; `None` (counted) otherwise.
    fn row(&mut self, device: &Arc<str>, thing: bool) -> Option<&mut DeviceEntry> {
        if !self.devices.contains_key(&**device) {
            if self.devices.len() >= self.max {
                self.overflow += 1;
                self.overflow_total += 1;
                return None;
            }
            self.devices.insert(device.clone(), DeviceEntry::default());
        }
        let row = self.devices.get_mut(&**device)?;
        row.thing |= thing;
        Some(row)
    }

    fn take(&mut self, now: u64) -> ActivityWindow {
        let devices = std::mem::take(&mut self.devices);
        let mut devices: Vec<DeviceActivity> = devices
            .into_iter()
            .map(|(device, e)| DeviceActivity {
                device: device.to_string(),
                thing: e.thing,
                messages_sent: e.counts.sent,
                messages_received: e.counts.received,
                bytes_sent: e.counts.bytes_sent,
                bytes_received: e.counts.bytes_received,
                largest_message: e.counts.largest,
                authorization_failures: e.counts.auth_failures,
                connection_attempts: e.attempts,
                refused_connection_attempts: e.refused,
                disconnects: e.disconnects,
                source_ips: e.ips,
                source_ips_truncated: e.ips_truncated,
            })
            .collect();
        devices.sort_by(|a, b| a.device.cmp(&b.device));
        let window = ActivityWindow {
            start: self.start,
            end: now,
            devices,
            overflow: self.overflow,
        };
        self.overflow = 0;
        self.start = now;
        window
    }
}

/// One connection in the log (the compact form; [`ConnectionRecord`] is made when read).
#[derive(Debug)]
struct LogEntry {
    connection: u64,
    client_id: Arc<str>,
    principal: CertificateId,
    thing: bool,
    ip: IpAddr,
    connected_at: u64,
    disconnected_at: Option<u64>,
    reason: Option<DisconnectReason>,
}

/// The connection log: entries ordered by connection number (the order connections were
/// accepted in).
#[derive(Debug)]
struct ConnectionLog {
    entries: VecDeque<LogEntry>,
    retention: u64,
    max: usize,
    dropped: u64,
    expired: u64,
    pruned_at: u64,
}

/// How often at most the log looks for records past their retention when one is added.
const PRUNE_INTERVAL_SECS: u64 = 60;

impl ConnectionLog {
    fn position(&self, connection: u64) -> Result<usize, usize> {
        self.entries
            .binary_search_by_key(&connection, |e| e.connection)
    }

    fn add(&mut self, entry: LogEntry, now: u64) {
        if self.max == 0 {
            return;
        }
        if now >= self.pruned_at.saturating_add(PRUNE_INTERVAL_SECS) {
            self.prune(now);
        }
        while self.entries.len() >= self.max {
            self.entries.pop_front();
            self.dropped += 1;
        }
        // Connection numbers are taken just before this lock: nearly always the last.
        match self.position(entry.connection) {
            Ok(_) => {}
            Err(at) => self.entries.insert(at, entry),
        }
    }

    fn closed(&mut self, connection: u64, at: u64, reason: DisconnectReason) {
        if let Ok(i) = self.position(connection)
            && let Some(e) = self.entries.get_mut(i)
        {
            e.disconnected_at = Some(at);
            e.reason = Some(reason);
        }
    }

    /// Removes the records that closed more than the retention before `now`.
    fn prune(&mut self, now: u64) {
        self.pruned_at = now;
        let cutoff = now.saturating_sub(self.retention);
        let before = self.entries.len();
        self.entries
            .retain(|e| e.disconnected_at.is_none_or(|d| d >= cutoff));
        self.expired += (before - self.entries.len()) as u64;
    }
}

/// Everything the broker records about fleet activity; one per broker, in `Shared`.
#[derive(Debug)]
pub(crate) struct Activity {
    log: Mutex<ConnectionLog>,
    devices: Mutex<DeviceTable>,
    instance: u64,
    job_in: AtomicU64,
    job_out: AtomicU64,
    stream_messages: AtomicU64,
    stream_bytes: AtomicU64,
}

/// What the connection log knows about a connection when it is accepted.
pub(crate) struct Accepted<'a> {
    pub(crate) connection: u64,
    pub(crate) client_id: &'a Arc<str>,
    pub(crate) principal: CertificateId,
    pub(crate) thing: bool,
    pub(crate) ip: IpAddr,
    pub(crate) at: u64,
}

impl Activity {
    /// Empty records with these bounds; `instance` makes the session identifiers (as the
    /// lifecycle events').
    pub(crate) fn new(
        retention: Duration,
        max_records: usize,
        max_devices: usize,
        instance: u64,
        now: u64,
    ) -> Activity {
        Activity {
            log: Mutex::new(ConnectionLog {
                entries: VecDeque::new(),
                retention: retention.as_secs(),
                max: max_records,
                dropped: 0,
                expired: 0,
                pruned_at: now,
            }),
            devices: Mutex::new(DeviceTable {
                devices: HashMap::new(),
                max: max_devices,
                overflow: 0,
                overflow_total: 0,
                start: now,
            }),
            instance,
            job_in: AtomicU64::new(0),
            job_out: AtomicU64::new(0),
            stream_messages: AtomicU64::new(0),
            stream_bytes: AtomicU64::new(0),
        }
    }

    /// The lifecycle events' `sessionIdentifier` of connection number `connection`.
    pub(crate) fn session_identifier(&self, connection: u64) -> String {
        format!("{:016x}-{connection:016x}", self.instance)
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, DeviceTable> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self) -> std::sync::MutexGuard<'_, ConnectionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An accepted CONNECT: a log record, an attempt and a source address for the device.
    pub(crate) fn connected(&self, c: Accepted<'_>) {
        if let Some(row) = self.devices().row(c.client_id, c.thing) {
            row.attempts += 1;
            row.saw(c.ip);
        }
        self.log().add(
            LogEntry {
                connection: c.connection,
                client_id: c.client_id.clone(),
                principal: c.principal,
                thing: c.thing,
                ip: c.ip,
                connected_at: c.at,
                disconnected_at: None,
                reason: None,
            },
            c.at,
        );
    }

    /// A refused CONNECT of `client_id` (not logged as a connection); `denied` when its
    /// policies refused it (an authorization failure too). An empty client ID names no device
    /// and is not counted here.
    pub(crate) fn refused(&self, client_id: &str, thing: bool, ip: IpAddr, denied: bool) {
        if client_id.is_empty() {
            return;
        }
        let key: Arc<str> = Arc::from(client_id);
        if let Some(row) = self.devices().row(&key, thing) {
            row.attempts += 1;
            row.refused += 1;
            row.counts.auth_failures += u64::from(denied);
            row.saw(ip);
        }
    }

    /// Adds a connection's counters to its device's row and clears them.
    pub(crate) fn fold(&self, device: &Arc<str>, thing: bool, counts: &mut Counts) {
        if counts.is_zero() {
            return;
        }
        if let Some(row) = self.devices().row(device, thing) {
            row.counts.add(counts);
        }
        *counts = Counts::default();
    }

    /// A closed connection: its last counters and a disconnect for the device, and its log
    /// record's end.
    pub(crate) fn disconnected(
        &self,
        device: &Arc<str>,
        thing: bool,
        connection: u64,
        counts: &mut Counts,
        reason: DisconnectReason,
        at: u64,
    ) {
        if let Some(row) = self.devices().row(device, thing) {
            row.counts.add(counts);
            row.disconnects += 1;
        }
        *counts = Counts::default();
        self.log().closed(connection, at, reason);
    }

    /// The records of the connections open at some time in `[since, now]`: those still open
    /// and those that closed at `since` or later, in the order they were accepted.
    pub(crate) fn connection_log(&self, since: u64, now: u64) -> Vec<ConnectionRecord> {
        let mut log = self.log();
        log.prune(now);
        log.entries
            .iter()
            .filter(|e| e.disconnected_at.is_none_or(|d| d >= since))
            .map(|e| ConnectionRecord {
                client_id: e.client_id.to_string(),
                principal: e.principal.to_string(),
                thing_name: e.thing.then(|| e.client_id.to_string()),
                source_ip: e.ip,
                session_identifier: self.session_identifier(e.connection),
                connected_at: e.connected_at,
                disconnected_at: e.disconnected_at,
                disconnect_reason: e.reason,
            })
            .collect()
    }

    /// Drains the current window.
    pub(crate) fn take(&self, now: u64) -> ActivityWindow {
        self.devices().take(now)
    }

    /// The sizes and losses.
    pub(crate) fn counters(&self) -> ActivityCounters {
        let (devices, device_overflow) = {
            let t = self.devices();
            (t.devices.len(), t.overflow_total)
        };
        let log = self.log();
        ActivityCounters {
            connection_records: log.entries.len(),
            connection_records_dropped: log.dropped,
            connection_records_expired: log.expired,
            devices,
            device_overflow,
        }
    }

    /// A job message a device published (the caller checked [`is_job_topic`]).
    pub(crate) fn job_message_in(&self) {
        self.job_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what the broker writes on `topic` (one message of `payload` bytes to `copies`
    /// sessions) when it is a job or stream data topic; a prefix test otherwise.
    pub(crate) fn outbound(&self, topic: &str, payload: usize, copies: usize) {
        if copies == 0 || !topic.starts_with(THINGS_PREFIX) {
            return;
        }
        if is_job_topic(topic) {
            self.job_out.fetch_add(copies as u64, Ordering::Relaxed);
        } else if is_stream_data_topic(topic) {
            self.stream_messages
                .fetch_add(copies as u64, Ordering::Relaxed);
            self.stream_bytes
                .fetch_add((payload * copies) as u64, Ordering::Relaxed);
        }
    }

    /// The maintenance counters now.
    pub(crate) fn maintenance(&self) -> MaintenanceCounters {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MaintenanceCounters {
            job_messages_in: l(&self.job_in),
            job_messages_out: l(&self.job_out),
            stream_messages_out: l(&self.stream_messages),
            stream_bytes_out: l(&self.stream_bytes),
        }
    }
}

const THINGS_PREFIX: &str = "$aws/things/";

/// The levels after `$aws/things/{thing}/`, when `topic` is a per-thing reserved topic.
fn thing_topic_rest(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(THINGS_PREFIX)?;
    let (thing, rest) = rest.split_once('/')?;
    (!thing.is_empty()).then_some(rest)
}

/// `$aws/things/{thing}/jobs` and everything under it (the Jobs device API and its
/// notifications).
pub(crate) fn is_job_topic(topic: &str) -> bool {
    thing_topic_rest(topic).is_some_and(|r| r == "jobs" || r.starts_with("jobs/"))
}

/// `$aws/things/{thing}/streams/{stream}/data/{json|cbor}`: a block of a stream (MQTT-based
/// file delivery).
pub(crate) fn is_stream_data_topic(topic: &str) -> bool {
    let Some(rest) = thing_topic_rest(topic).and_then(|r| r.strip_prefix("streams/")) else {
        return false;
    };
    let mut levels = rest.split('/');
    matches!(
        (levels.next(), levels.next(), levels.next(), levels.next()),
        (Some(s), Some("data"), Some("json" | "cbor"), None) if !s.is_empty()
    )
}

/// The most recent latency samples (microseconds), written without locks by the rules
/// engine's action workers.
pub(crate) struct LatencyRing {
    slots: Box<[AtomicU32]>,
    next: AtomicU64,
}

impl std::fmt::Debug for LatencyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyRing")
            .field("recorded", &self.next.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for LatencyRing {
    fn default() -> Self {
        LatencyRing {
            slots: (0..RULES_LATENCY_SAMPLES)
                .map(|_| AtomicU32::new(0))
                .collect(),
            next: AtomicU64::new(0),
        }
    }
}

impl LatencyRing {
    /// Records the time since `since` (saturating at `u32::MAX` microseconds, 71 minutes).
    pub(crate) fn record_since(&self, since: Instant) {
        let micros = u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.record(micros);
    }

    fn record(&self, micros: u32) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let len = self.slots.len() as u64;
        if let Some(slot) = self.slots.get((n % len) as usize) {
            slot.store(micros, Ordering::Relaxed);
        }
    }

    /// The samples kept, oldest first. Samples written while this reads may show up or not.
    pub(crate) fn samples(&self) -> Vec<u32> {
        let n = self.next.load(Ordering::Relaxed);
        let len = self.slots.len();
        let l = |s: &AtomicU32| s.load(Ordering::Relaxed);
        if n <= len as u64 {
            return self.slots.iter().take(n as usize).map(l).collect();
        }
        let start = (n % len as u64) as usize;
        let (older, newer) = self.slots.split_at(start);
        newer.iter().chain(older).map(l).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn activity(records: usize, devices: usize) -> Activity {
        Activity::new(Duration::from_secs(100), records, devices, 7, 1_000)
    }

    fn accept(a: &Activity, connection: u64, client: &str, at: u64) -> Arc<str> {
        let client_id: Arc<str> = Arc::from(client);
        a.connected(Accepted {
            connection,
            client_id: &client_id,
            principal: CertificateId::of_der(b"cert"),
            thing: false,
            ip: ip(1),
            at,
        });
        client_id
    }

    #[test]
    fn recognises_job_and_stream_data_topics() {
        assert!(is_job_topic("$aws/things/t/jobs/get"));
        assert!(is_job_topic("$aws/things/t/jobs/notify-next"));
        assert!(is_job_topic("$aws/things/t/jobs"));
        assert!(!is_job_topic("$aws/things//jobs/get"));
        assert!(!is_job_topic("$aws/things/t/jobsx"));
        assert!(!is_job_topic("$aws/things/t/shadow/update"));
        assert!(!is_job_topic("telemetry/t/jobs/get"));
        assert!(is_stream_data_topic("$aws/things/t/streams/s/data/cbor"));
        assert!(is_stream_data_topic("$aws/things/t/streams/s/data/json"));
        assert!(!is_stream_data_topic("$aws/things/t/streams/s/data/xml"));
        assert!(!is_stream_data_topic("$aws/things/t/streams/s/get/cbor"));
        assert!(!is_stream_data_topic("$aws/things/t/streams/s/data/cbor/x"));
    }

    #[test]
    fn the_log_drops_the_oldest_record_at_its_cap_and_counts_it() {
        let a = activity(2, 10);
        for (i, c) in ["a", "b", "c"].into_iter().enumerate() {
            accept(&a, i as u64 + 1, c, 1_000);
        }
        let log = a.connection_log(0, 1_000);
        let ids: Vec<&str> = log.iter().map(|r| r.client_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(a.counters().connection_records_dropped, 1);
        assert_eq!(log[0].session_identifier, format!("{:016x}-{:016x}", 7, 2));
    }

    #[test]
    fn closed_records_expire_after_the_retention_and_open_ones_stay() {
        let a = activity(10, 10);
        let open = accept(&a, 1, "open", 1_000);
        let closed = accept(&a, 2, "closed", 1_000);
        let mut counts = Counts::default();
        a.disconnected(
            &closed,
            false,
            2,
            &mut counts,
            DisconnectReason::ConnectionLost,
            1_010,
        );
        let log = a.connection_log(1_005, 1_050);
        assert_eq!(log.len(), 2);
        assert_eq!(
            log[1].disconnect_reason,
            Some(DisconnectReason::ConnectionLost)
        );
        // Closed before `since`: not in the answer, still kept.
        assert_eq!(a.connection_log(1_011, 1_050).len(), 1);
        // Past the retention (100 s after it closed): removed.
        let log = a.connection_log(0, 1_111);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].client_id, &*open);
        assert_eq!(a.counters().connection_records_expired, 1);
    }

    #[test]
    fn folds_add_up_and_a_take_drains_the_window() {
        let a = activity(10, 10);
        let dev = accept(&a, 1, "dev", 1_000);
        let mut c = Counts::default();
        c.sent(10);
        c.sent(30);
        c.received(5);
        c.auth_failures += 1;
        a.fold(&dev, false, &mut c);
        assert!(c.is_zero());
        c.sent(20);
        a.disconnected(
            &dev,
            false,
            1,
            &mut c,
            DisconnectReason::ClientInitiatedDisconnect,
            1_001,
        );
        a.refused("dev", false, ip(2), true);
        let w = a.take(1_060);
        assert_eq!((w.start, w.end), (1_000, 1_060));
        let d = &w.devices[0];
        assert_eq!(d.device, "dev");
        assert_eq!(
            (d.messages_sent, d.bytes_sent, d.largest_message),
            (3, 60, 30)
        );
        assert_eq!((d.messages_received, d.bytes_received), (1, 5));
        assert_eq!(d.authorization_failures, 2);
        assert_eq!(
            (d.connection_attempts, d.refused_connection_attempts),
            (2, 1)
        );
        assert_eq!(d.disconnects, 1);
        assert_eq!(d.source_ips, vec![ip(1), ip(2)]);
        let w = a.take(1_120);
        assert_eq!(w.start, 1_060);
        assert!(w.devices.is_empty());
    }

    #[test]
    fn devices_beyond_the_cap_are_counted_as_overflow() {
        let a = activity(10, 1);
        a.refused("a", false, ip(1), false);
        a.refused("b", false, ip(1), false);
        a.refused("a", false, ip(1), false);
        let w = a.take(1_001);
        assert_eq!(w.devices.len(), 1);
        assert_eq!(w.devices[0].connection_attempts, 2);
        assert_eq!(w.overflow, 1);
        assert_eq!(a.counters().device_overflow, 1);
    }

    #[test]
    fn source_ips_are_bounded_per_device() {
        let a = activity(10, 10);
        for i in 0..20 {
            a.refused("d", false, ip(i % 10), false);
        }
        let w = a.take(1_001);
        assert_eq!(w.devices[0].source_ips.len(), MAX_SOURCE_IPS);
        assert!(w.devices[0].source_ips_truncated);
    }

    #[test]
    fn the_latency_ring_keeps_the_most_recent_samples_oldest_first() {
        let ring = LatencyRing::default();
        assert!(ring.samples().is_empty());
        ring.record(5);
        ring.record(6);
        assert_eq!(ring.samples(), vec![5, 6]);
        for i in 0..RULES_LATENCY_SAMPLES as u32 {
            ring.record(100 + i);
        }
        let s = ring.samples();
        assert_eq!(s.len(), RULES_LATENCY_SAMPLES);
        assert_eq!(s[0], 100);
        assert_eq!(s[s.len() - 1], 100 + RULES_LATENCY_SAMPLES as u32 - 1);
    }
}
