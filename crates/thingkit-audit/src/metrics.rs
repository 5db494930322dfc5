//! The fleet's key metrics: pure functions over registry, connection, firmware, finding, latency
//! and usage records.
//!
//! Each function states its formula, what it counts and its edge cases. Rates are returned as a
//! [`Ratio`] (numerator and denominator, never a bare float), so an empty fleet is visible as
//! `0 / 0` instead of a silent `0 %` or `NaN`.
//!
//! | metric | function |
//! |---|---|
//! | device connection rate | [`connection_rate`] (connected / registered), [`connect_success_rate`] (successful / attempted connects in a window) |
//! | device security vulnerability rate | [`firmware_vulnerability_rate`] (a) and [`finding_vulnerability_rate`] (b): two numbers, never mixed |
//! | data analytics processing time | [`processing_time`] (p50 and p99 of publish-to-action latencies) |
//! | device maintenance cost | [`maintenance_cost`] (firmware-update bytes and job messages at given rates) |
//!
//! Spec: `rules-audit.md` C.3 (connection rate, vulnerability rate).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// A share: `numerator` out of `denominator` things (or attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Ratio {
    /// What is counted (connected things, successful connects, ...).
    pub numerator: u64,
    /// Out of how many (registered things, attempts, ...).
    pub denominator: u64,
}

impl Ratio {
    /// `numerator / denominator`, or `None` when the denominator is 0 (an empty fleet has no
    /// rate, rather than a rate of 0).
    pub fn value(&self) -> Option<f64> {
        (self.denominator != 0).then(|| self.numerator as f64 / self.denominator as f64)
    }
}

/// The exact nearest-rank percentile of `values`, reordering the slice in place.
///
/// `per_ten_thousand` is the percentile in hundredths of a percent (`p50` = 5,000, `p99.9` =
/// 9,990, `p100` = 10,000; values over 10,000 are treated as 10,000). With `n` values in ascending
/// order `v[1] ≤ … ≤ v[n]`, the result is `v[k]` with rank `k = max(1, ⌈per_ten_thousand · n /
/// 10,000⌉)`: the smallest value such that at least that share of the values is less than or equal
/// to it. So `p0` is the minimum, `p100` the maximum, and the result is always one of the values
/// (no interpolation). `None` for an empty slice.
///
/// Runs in linear expected time (`select_nth_unstable`), without sorting or allocating.
pub fn percentile(values: &mut [u64], per_ten_thousand: u16) -> Option<u64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let q = u128::from(per_ten_thousand.min(10_000));
    let rank = (q * n as u128).div_ceil(10_000).max(1);
    // rank ≤ n because q ≤ 10,000; the conversion cannot fail on any supported platform.
    let index = usize::try_from(rank - 1).unwrap_or(n - 1).min(n - 1);
    let (_, nth, _) = values.select_nth_unstable(index);
    Some(*nth)
}

/// A lifecycle event's kind (`eventType` of `$aws/events/presence/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleEventType {
    /// `connected`.
    Connected,
    /// `disconnected`.
    Disconnected,
}

/// One lifecycle event, reduced to what the connection rate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleEvent<'a> {
    /// `clientId`. Connectivity is keyed by client id = thing name (C.3): a device connecting
    /// under another client id does not count for any thing.
    pub client_id: &'a str,
    /// Connected or disconnected.
    pub event_type: LifecycleEventType,
    /// `versionNumber`: increases per connection of a client id; both events of one connection
    /// share it; reset to 0 after about an hour disconnected.
    pub version_number: u64,
    /// `timestamp`: when the event happened, unix milliseconds (accurate to ±2 minutes).
    pub timestamp: u64,
}

/// How far apart two lifecycle timestamps must be for their order to be certain: twice the
/// ±2 minutes AWS gives for `timestamp`, in milliseconds.
pub const TIMESTAMP_UNCERTAINTY_MS: u64 = 240_000;

/// Device connection rate: `|registered things whose latest lifecycle state is connected| /
/// |registered things|`.
///
/// - The latest state of a client id is decided by `versionNumber` (C.3): the event with the
///   highest number wins, and between a `connected` and a `disconnected` event with the same
///   number (one connection) `disconnected` wins. Because the number resets to 0 after about an
///   hour disconnected (thingkit's broker does the same), it is compared only among the client
///   id's events whose timestamps lie within [`TIMESTAMP_UNCERTAINTY_MS`] of its newest event;
///   older events are certainly earlier. Within one numbering this is exactly the
///   version rule, since numbers grow with time.
/// - Event order in `events` does not matter; duplicated events change nothing.
/// - A thing is connected when an event of the client id equal to its name says so; things with
///   no event are disconnected. Events of client ids that are not registered things are ignored.
/// - Repeated names in `registered` are counted once. The denominator is the number of distinct
///   registered things; 0 things gives `0 / 0` ([`Ratio::value`] is `None`).
///
/// This equals fleet indexing's `GetStatistics(connectivity.connected).average`.
pub fn connection_rate<'a>(
    registered: impl IntoIterator<Item = &'a str>,
    events: &[LifecycleEvent<'_>],
) -> Ratio {
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for e in events {
        let t = newest.entry(e.client_id).or_insert(e.timestamp);
        *t = (*t).max(e.timestamp);
    }
    let mut latest: HashMap<&str, (u64, LifecycleEventType)> = HashMap::new();
    for e in events {
        let Some(&t) = newest.get(e.client_id) else {
            continue;
        };
        if e.timestamp.saturating_add(TIMESTAMP_UNCERTAINTY_MS) < t {
            continue;
        }
        let entry = latest
            .entry(e.client_id)
            .or_insert((e.version_number, e.event_type));
        let replace = e.version_number > entry.0
            || (e.version_number == entry.0 && e.event_type == LifecycleEventType::Disconnected);
        if replace {
            *entry = (e.version_number, e.event_type);
        }
    }
    let things: HashSet<&str> = registered.into_iter().collect();
    let connected = things
        .iter()
        .filter(|t| {
            latest
                .get(*t)
                .is_some_and(|(_, kind)| *kind == LifecycleEventType::Connected)
        })
        .count();
    Ratio {
        numerator: connected as u64,
        denominator: things.len() as u64,
    }
}

/// One connection attempt as the broker saw it (CONNECT received, CONNACK decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectAttempt {
    /// When the attempt was made (unix seconds).
    pub time: u64,
    /// Whether the connection was accepted (CONNACK success).
    pub successful: bool,
}

/// Connect success rate over a window: `|successful attempts| / |attempts|`, counting attempts
/// with `window_start ≤ time < window_end`.
///
/// Every attempt counts, including repeated attempts of one device. No attempt in the window
/// (or `window_end ≤ window_start`) gives `0 / 0`.
pub fn connect_success_rate(
    attempts: &[ConnectAttempt],
    window_start: u64,
    window_end: u64,
) -> Ratio {
    let mut ratio = Ratio {
        numerator: 0,
        denominator: 0,
    };
    for a in attempts
        .iter()
        .filter(|a| a.time >= window_start && a.time < window_end)
    {
        ratio.denominator += 1;
        ratio.numerator += u64::from(a.successful);
    }
    ratio
}

/// A registered thing and the firmware version it reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThingFirmware<'a> {
    /// The thing's name.
    pub thing: &'a str,
    /// The firmware version it runs, if it ever reported one.
    pub version: Option<&'a str>,
}

/// Device security vulnerability rate (a): `|things whose firmware version is in vulnerable| /
/// |registered things|`.
///
/// Versions compare as exact strings. A thing that never reported a version counts in the
/// denominator and not in the numerator (unknown is not vulnerable; report the unknown share
/// separately if it matters). A name listed twice counts once, with its first entry's version.
/// No things gives `0 / 0`.
pub fn firmware_vulnerability_rate(things: &[ThingFirmware<'_>], vulnerable: &[&str]) -> Ratio {
    let vulnerable: HashSet<&str> = vulnerable.iter().copied().collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(things.len());
    let mut ratio = Ratio {
        numerator: 0,
        denominator: 0,
    };
    for t in things {
        if !seen.insert(t.thing) {
            continue;
        }
        ratio.denominator += 1;
        if t.version.is_some_and(|v| vulnerable.contains(v)) {
            ratio.numerator += 1;
        }
    }
    ratio
}

/// An audit finding's severity (Device Defender's four levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// `LOW`.
    Low,
    /// `MEDIUM`.
    Medium,
    /// `HIGH`.
    High,
    /// `CRITICAL`.
    Critical,
}

/// The resource an audit finding is about, as far as reaching things goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingResource<'a> {
    /// A device certificate, by certificate id.
    Certificate(&'a str),
    /// A policy, by name.
    Policy(&'a str),
    /// A client id (e.g. conflicting client ids): reaches the thing of that name.
    ClientId(&'a str),
}

/// An open (not suppressed, not resolved) audit finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding<'a> {
    /// The check's severity.
    pub severity: Severity,
    /// The non-compliant resource.
    pub resource: FindingResource<'a>,
}

/// The registry's attachments: which certificates each thing has, which policies each
/// certificate has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attachments<'a> {
    /// Registered things.
    pub things: &'a [&'a str],
    /// `(thing, certificate id)` pairs (AttachThingPrincipal).
    pub thing_certificates: &'a [(&'a str, &'a str)],
    /// `(certificate id, policy name)` pairs (AttachPolicy on a certificate).
    pub certificate_policies: &'a [(&'a str, &'a str)],
}

/// Device security vulnerability rate (b): `|registered things reached by at least one open
/// CRITICAL or HIGH finding| / |registered things|`.
///
/// A finding reaches a thing when its resource is a certificate attached to the thing, a
/// policy attached to such a certificate, or a client id equal to the thing's name. MEDIUM and
/// LOW findings are ignored; pass only open findings (suppressed and resolved ones are the
/// caller's to filter). Attachments naming unregistered things are ignored; a name listed twice
/// in `things` counts once. No things gives `0 / 0`.
pub fn finding_vulnerability_rate(fleet: &Attachments<'_>, findings: &[Finding<'_>]) -> Ratio {
    let serious = || findings.iter().filter(|f| f.severity >= Severity::High);
    let mut bad_certs: HashSet<&str> = HashSet::new();
    let mut bad_policies: HashSet<&str> = HashSet::new();
    let mut bad_clients: HashSet<&str> = HashSet::new();
    for f in serious() {
        match f.resource {
            FindingResource::Certificate(c) => bad_certs.insert(c),
            FindingResource::Policy(p) => bad_policies.insert(p),
            FindingResource::ClientId(c) => bad_clients.insert(c),
        };
    }
    for (cert, policy) in fleet.certificate_policies {
        if bad_policies.contains(policy) {
            bad_certs.insert(cert);
        }
    }
    let things: HashSet<&str> = fleet.things.iter().copied().collect();
    let mut reached: HashSet<&str> = things
        .iter()
        .copied()
        .filter(|t| bad_clients.contains(t))
        .collect();
    for (thing, cert) in fleet.thing_certificates {
        if things.contains(thing) && bad_certs.contains(cert) {
            reached.insert(thing);
        }
    }
    Ratio {
        numerator: reached.len() as u64,
        denominator: things.len() as u64,
    }
}

/// The rules engine's processing time over a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessingTime {
    /// How many latencies the sample held.
    pub count: usize,
    /// The median ([`percentile`] at 5,000).
    pub p50: u64,
    /// The 99th percentile ([`percentile`] at 9,900).
    pub p99: u64,
}

/// Data analytics processing time: p50 and p99 of a sample of rules-engine latencies, each the
/// time from the broker accepting a PUBLISH to the rule's action completing.
///
/// Latencies are in whatever unit the caller measures (microseconds, say) and the result is in
/// that unit. Percentiles are exact nearest-rank ([`percentile`]): each is one of the samples.
/// The slice is reordered. An empty sample gives `None`.
pub fn processing_time(latencies: &mut [u64]) -> Option<ProcessingTime> {
    let p50 = percentile(latencies, 5_000)?;
    let p99 = percentile(latencies, 9_900)?;
    Some(ProcessingTime {
        count: latencies.len(),
        p50,
        p99,
    })
}

/// Maintenance traffic over a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaintenanceUsage {
    /// Bytes of firmware images delivered to devices (OTA downloads).
    pub firmware_bytes: u64,
    /// Job messages exchanged with devices (job notifications, describe/update-execution
    /// requests and responses).
    pub job_messages: u64,
}

/// Prices for maintenance traffic, in nano-units of the currency (1 USD = 10⁹).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaintenanceRates {
    /// Price of one million messages (AWS IoT Core messaging: $1.00 = 1,000,000,000).
    pub per_million_messages: u64,
    /// Price of one gigabyte (10⁹ bytes) of firmware transfer.
    pub per_gigabyte: u64,
}

/// What maintenance cost, in nano-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MaintenanceCost {
    /// `⌊job_messages · per_million_messages / 10⁶⌋`.
    pub messages: u64,
    /// `⌊firmware_bytes · per_gigabyte / 10⁹⌋`.
    pub firmware: u64,
    /// `messages + firmware`.
    pub total: u64,
}

/// Device maintenance cost: firmware-update bytes and job messages priced at the given rates.
///
/// `messages = ⌊job_messages × per_million_messages / 1,000,000⌋`,
/// `firmware = ⌊firmware_bytes × per_gigabyte / 1,000,000,000⌋`, `total = messages + firmware`,
/// all in nano-units; each term is computed exactly (128-bit) and rounded down once, and a
/// result over `u64::MAX` nano-units (18 billion USD) saturates. Zero usage costs zero.
pub fn maintenance_cost(usage: MaintenanceUsage, rates: MaintenanceRates) -> MaintenanceCost {
    let term = |amount: u64, rate: u64, per: u128| {
        u64::try_from(u128::from(amount) * u128::from(rate) / per).unwrap_or(u64::MAX)
    };
    let messages = term(usage.job_messages, rates.per_million_messages, 1_000_000);
    let firmware = term(usage.firmware_bytes, rates.per_gigabyte, 1_000_000_000);
    MaintenanceCost {
        messages,
        firmware,
        total: messages.saturating_add(firmware),
    }
}
