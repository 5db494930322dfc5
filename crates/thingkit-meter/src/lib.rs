//! # thingkit-meter
//!
//! Meters what every device and account sends through an MQTT broker, limits misbehaving devices
//! before they hurt the fleet, and turns usage into exact, auditable, replayable bills. It sits on
//! the broker's hot path (64 bytes of state per connection; per message, a few plain loads and
//! stores in the connection's own handle) and never loses usage it has acknowledged (a durable,
//! idempotent ledger).
//!
//! ```
//! use thingkit_meter::limiter::{Limits, Nanos};
//! use thingkit_meter::meter::{ConnectionTable, Granularity, Meter};
//! use thingkit_meter::policy::{MeteringPolicy, PacketKind};
//! use thingkit_meter::rating::{BillingRun, PriceTable};
//! use thingkit_meter::usage::{UsageEvent, UsageLimits};
//!
//! # fn main() -> Result<(), thingkit_meter::Error> {
//! // An 8 KB message is two AWS units (5 KB blocks, 1 KB = 1,024 bytes).
//! let aws = MeteringPolicy::aws();
//! assert_eq!(aws.units(PacketKind::Publish, 8 * 1024), 2);
//!
//! // The hot path: rate-limit and count one publish per call, flush into the node's meter.
//! let table = ConnectionTable::new(aws.clone(), &Limits::aws_connection(), 1_000_000)?;
//! let meter = Meter::new("node-1", aws, Granularity::Day, 1_000_000)?;
//! let mut conn = table.connect("acme", "sensor-7", 1_764_115_200)?;
//! assert!(table.record_publish(&mut conn, 8192, false, Nanos::from_secs(1))?.is_allowed());
//! table.disconnect(conn, &meter, 1_764_115_260)?; // records 1 connection minute
//!
//! // Billing: usage events (repeated ids ignored) priced with a versioned table.
//! let mut run = BillingRun::new(PriceTable::preset("aws-us-east-1")?);
//! let line = br#"{"id":"e1","account":"acme","device":"sensor-7","kind":"publish","bytes":8192,"time":1764115200}"#;
//! run.add(&UsageEvent::parse_line(line, &UsageLimits::default())?)?;
//! let bill = &run.bills()?[0];
//! assert_eq!(bill.total.to_string(), "0.000002"); // 2 units at $1.00 per million
//! # Ok(()) }
//! ```
//!
//! ## Modules
//!
//! - [`policy`]: how a message becomes billable units; presets `aws`, `azure`, `azure-free`,
//!   `gcp`.
//! - [`limiter`]: keyed GCRA rate limiter (weighted cost, peek, actions with MQTT 5 reason codes,
//!   idle eviction, hard key cap, AWS IoT Core default quotas).
//! - [`meter`]: per-connection hot-path counters, per-node aggregates, mergeable node aggregates.
//! - [`quota`]: daily and monthly UTC quotas per account with warning events.
//! - [`rating`]: versioned price tables, graduated tiers, free allowance, provisioned units,
//!   bills from usage events or from a meter's aggregated totals.
//! - [`money`]: exact money in integer nano-units.
//! - [`usage`]: usage events and their JSON-lines form.
//! - [`ledger`]: the durable, idempotent usage ledger (redb).
//! - [`export`]: JSON lines and CSV export for analytics engines.
//! - [`calendar`]: UTC day and month arithmetic.
//!
//! ## Concurrency
//!
//! Every shared structure takes `&self` and is `Sync` (share it with `Arc`). The hot path,
//! [`meter::ConnectionTable::record_publish`], takes `&mut meter::Connection`: the broker's
//! connection task owns its handle, which makes it the single writer of that connection's
//! rate-limit state and inbound counters. Those live in the handle itself, so recording is a few
//! plain loads and stores in memory the connection task already has at hand — no lookup, no
//! atomic. Outbound deliveries, the keyed [`limiter::RateLimiter`], the
//! [`meter::Meter`], [`quota::Quotas`] and the ledger are safe to call from any thread at once.
//!
//! ## Cargo features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `ledger-redb` | yes | the [`ledger`] module, backed by the `redb` embedded database |
//!
//! ## Specifications
//!
//! - MQTT 5.0 (OASIS Standard, 2019) reason codes used by limit actions: 0x97 *Quota exceeded*
//!   (§3.4.2.1 PUBACK, §3.2.2.2 CONNACK, §3.14.2.1 DISCONNECT), 0x9F *Connection rate exceeded*
//!   (§3.2.2.2 CONNACK, §3.14.2.1 DISCONNECT), and 0x96 *Message rate too high*, which exists only
//!   in DISCONNECT (§3.14.2.1): a limit that would *reject* with it is refused as configuration.
//! - GCRA, the generic cell rate algorithm (ITU-T I.371 §4.4.2, virtual scheduling form).
//! - RFC 4180 CSV and JSON Lines for export; RFC 8259 JSON for usage events and price tables.
//! - Metering and quota defaults follow the published AWS IoT Core, Azure IoT Hub and (retired)
//!   Google Cloud IoT Core pricing and quota pages; see [`policy`] and [`rating`].
//!
//! ## What this crate does not do
//!
//! It performs no I/O besides the optional ledger file, reads no clock (callers pass time), and
//! knows nothing about sockets or async runtimes: a broker composes it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod calendar;
mod error;
pub mod export;
#[cfg(feature = "ledger-redb")]
pub mod ledger;
pub mod limiter;
pub mod meter;
pub mod money;
pub mod policy;
pub mod quota;
pub mod rating;
pub mod usage;

pub use error::{Error, Result};
