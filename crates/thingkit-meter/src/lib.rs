//! # thingkit-meter
//!
//! Meters what every device and account sends through an MQTT broker, limits misbehaving devices
//! before they hurt the fleet, and turns usage into exact, auditable, replayable bills. It sits on
//! the broker's hot path (64 bytes of state per connection; per message, a few plain loads and
//! stores in the connection's own handle) and never loses usage it has acknowledged (a durable,
//! idempotent ledger).
//!
//! ```
//! use thingkit_meter::{RateLimits, Nanos};
//! use thingkit_meter::{ConnectionTable, Granularity, Meter};
//! use thingkit_meter::{MeteringPolicy, PacketKind};
//! use thingkit_meter::{BillingRun, PriceTable};
//! use thingkit_meter::{UsageEvent, UsageLimits};
//!
//! # fn main() -> Result<(), thingkit_meter::Error> {
//! // An 8 KB message is two AWS units (5 KB blocks, 1 KB = 1,024 bytes).
//! let aws = MeteringPolicy::aws();
//! assert_eq!(aws.units(PacketKind::Publish, 8 * 1024), 2);
//!
//! // The hot path: rate-limit and count one publish per call, flush into the node's meter.
//! let table = ConnectionTable::new(aws.clone(), &RateLimits::aws_connection(), 1_000_000)?;
//! let meter = Meter::new("node-1", aws, Granularity::Day, 1_000_000)?;
//! let mut conn = table.connect("acme", 1_764_115_200)?;
//! assert!(table.record_publish(&mut conn, 8192, false, Nanos::from_secs(1))?.is_allowed());
//! table.disconnect(conn, "sensor-7", &meter, 1_764_115_260)?; // records 1 connection minute
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
//! ## What is in the crate
//!
//! Every item is at the crate root; the modules behind them are private.
//!
//! - Metering: [`MeteringPolicy`], how a message becomes billable units; presets `aws`,
//!   `azure`, `azure-free`, `gcp`.
//! - Rate limits: [`RateLimiter`], a keyed GCRA limiter (weighted cost, peek, [`LimitAction`]s
//!   with MQTT 5 reason codes ([`LimitReason`]), idle eviction, hard key cap), [`RateLimits`]
//!   with the AWS IoT Core default quotas, answered by a [`RateDecision`].
//! - Counting: [`ConnectionTable`] (per-connection hot-path counters), [`Meter`] (per-node
//!   aggregates), [`NodeAggregate`] (mergeable node aggregates).
//! - Quotas: [`Quotas`], daily and monthly UTC quotas per account with warning events.
//! - Rating: [`PriceTable`] (versioned, graduated tiers, free allowance, provisioned units) and
//!   [`BillingRun`], bills from usage events or from a meter's aggregated totals, in exact
//!   [`Money`] (integer nano-units).
//! - Usage: [`UsageEvent`] and its JSON-lines form; the durable, idempotent `Ledger` (redb).
//! - Export: JSON lines and CSV for analytics engines ([`write_usage_csv`], [`write_bills_jsonl`],
//!   ...).
//!
//! ## Concurrency
//!
//! Every shared structure takes `&self` and is `Sync` (share it with `Arc`). The hot path,
//! [`ConnectionTable::record_publish`], takes `&mut Connection`: the broker's
//! connection task owns its handle, which makes it the single writer of that connection's
//! rate-limit state and inbound counters. Those live in the handle itself, so recording is a few
//! plain loads and stores in memory the connection task already has at hand — no lookup, no
//! atomic. Outbound deliveries, the keyed [`RateLimiter`], the
//! [`Meter`], [`Quotas`] and the ledger are safe to call from any thread at once.
//!
//! ## Cargo features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `ledger-redb` | yes | `Ledger`, the usage ledger backed by the `redb` embedded database |
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
//!   Google Cloud IoT Core pricing and quota pages; see [`MeteringPolicy`] and [`PriceTable`].
//!
//! ## What this crate does not do
//!
//! It performs no I/O besides the optional ledger file, reads no clock (callers pass time), and
//! knows nothing about sockets or async runtimes: a broker composes it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod calendar;
mod error;
mod export;
#[cfg(feature = "ledger-redb")]
mod ledger;
mod limiter;
mod meter;
mod metering;
mod money;
mod quota;
mod rating;
mod usage;

pub use calendar::Month;
pub use error::{Error, Result};
pub use export::{
    BILL_CSV_HEADER, ExportFormat, USAGE_CSV_HEADER, write_bills_csv, write_bills_jsonl,
    write_totals_csv, write_usage_csv, write_usage_csv_header, write_usage_csv_row,
    write_usage_jsonl,
};
#[cfg(feature = "ledger-redb")]
pub use ledger::{Appended, Ledger, LedgerConfig};
pub use limiter::{
    AdmissionLimits, KeyHandle, LimitAction, LimitKind, LimitReason, LimiterConfig, Nanos, Rate,
    RateDecision, RateLimiter, RateLimits,
};
pub use meter::{
    AggregateRow, CONNECTION_BYTES, Connection, ConnectionTable, Counts, Granularity, Meter,
    NodeAggregate, SLOT_BYTES, STATE_BYTES, UsageKey,
};
pub use metering::{
    BlockRule, CountedBytes, KB, KindSet, METERING_PRESETS, MeteringPolicy, PacketKind, PacketSize,
    connection_minutes,
};
pub use money::{Money, NANOS_PER_UNIT, UnitPrice};
pub use quota::{QuotaConfig, QuotaEvent, QuotaPeriod, Quotas};
pub use rating::{
    Added, Bill, BillingRun, LineItem, PRICE_PRESETS, PriceDimension, PriceTable, PriceTableLimits,
    ProvisionedPlan, Tier, TierCharge, rate_tiers,
};
pub use usage::{UsageEvent, UsageLimits};
