//! Rating; documented on [`PriceTable`].

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::calendar::{Day, Month};
use crate::error::{Error, Result};
use crate::meter::{Counts, Granularity, UsageKey};
use crate::metering::{KindSet, MeteringPolicy, PacketKind};
use crate::money::{Money, UnitPrice};
use crate::usage::UsageEvent;

/// One graduated tier: units up to (exclusive) `up_to` cumulative monthly units cost `price`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Upper bound (exclusive) of cumulative units in this tier; `None` for the last tier.
    pub up_to: Option<u64>,
    /// Price of units in this tier.
    pub price: UnitPrice,
}

/// A priced dimension (messaging, connectivity, shadow and registry, data volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceDimension {
    /// Name shown on the bill.
    pub name: String,
    /// The usage kinds whose units this dimension prices.
    pub kinds: KindSet,
    /// Units per account per month that cost nothing, used first.
    #[serde(default)]
    pub free_units: u64,
    /// Graduated tiers, `up_to` strictly increasing, the last one unbounded.
    pub tiers: Vec<Tier>,
}

/// An Azure-style plan: a number of provisioned units, each allowing `units_per_day` metered
/// units per UTC day, for a fixed monthly price per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedPlan {
    /// Name shown on the bill (e.g. `S1 units`).
    pub name: String,
    /// The usage kinds that count toward the daily allowance.
    pub kinds: KindSet,
    /// Metered units per provisioned unit per UTC day; at least 1.
    pub units_per_day: u64,
    /// Price of one provisioned unit for one month.
    pub price_per_unit: Money,
    /// Fewest units billed in a month with any usage.
    pub min_units: u64,
}

impl ProvisionedPlan {
    /// Provisioned units needed for a day with `day_units` metered units.
    pub fn units_needed(&self, day_units: u64) -> u64 {
        day_units
            .div_ceil(self.units_per_day.max(1))
            .max(self.min_units)
    }
}

/// A versioned price table.
///
/// Rating: turning metered units into a bill with exact money.
///
/// A [`PriceTable`] is versioned configuration (JSON): a [`MeteringPolicy`], priced
/// [`PriceDimension`]s with graduated monthly tiers and a free allowance, and optionally an
/// Azure-style [`ProvisionedPlan`]. [`BillingRun`] consumes [`UsageEvent`]s (ignoring repeated
/// ids) and produces one [`Bill`] per account and UTC month.
///
/// **Tiers** are bounds on the cumulative monthly units of a dimension: with the AWS table, units
/// 0..1,000,000,000 cost $1.00 per million, the next 4 billion $0.80, everything beyond $0.70.
/// **The free allowance** covers the first `free_units` units of the month (which sit in the
/// cheapest, first tier); units past it are charged at the tier they fall in. Tier thresholds
/// therefore count all units, free ones included.
///
/// The built-in tables reproduce the list prices quoted in the thingkit issue (AWS IoT Core
/// us-east-1 messaging and connectivity; Azure IoT Hub S1-S3 and free units; GCP-style data
/// volume). Prices change: check the provider's price page and ship your own table with a new
/// `version` rather than editing a released one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Table name, e.g. `aws-us-east-1`.
    pub name: String,
    /// Version of the table, e.g. the date the prices took effect.
    pub version: String,
    /// ISO 4217 currency code of every amount.
    pub currency: String,
    /// How usage becomes units.
    pub metering: MeteringPolicy,
    /// Usage-priced dimensions.
    #[serde(default)]
    pub dimensions: Vec<PriceDimension>,
    /// Provisioned-unit plan, if any.
    #[serde(default)]
    pub provisioned: Option<ProvisionedPlan>,
}

/// Limits applied when parsing a price table from untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PriceTableLimits {
    /// Largest accepted document in bytes (default 65,536).
    pub max_bytes: usize,
    /// Most dimensions (default 32).
    pub max_dimensions: usize,
    /// Most tiers per dimension (default 32).
    pub max_tiers: usize,
    /// Longest name, version or currency in bytes (default 128).
    pub max_name_bytes: usize,
}

impl PriceTableLimits {
    /// This value with [`max_bytes`](Self::max_bytes) replaced.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// This value with [`max_dimensions`](Self::max_dimensions) replaced.
    pub fn with_max_dimensions(mut self, max_dimensions: usize) -> Self {
        self.max_dimensions = max_dimensions;
        self
    }

    /// This value with [`max_tiers`](Self::max_tiers) replaced.
    pub fn with_max_tiers(mut self, max_tiers: usize) -> Self {
        self.max_tiers = max_tiers;
        self
    }

    /// This value with [`max_name_bytes`](Self::max_name_bytes) replaced.
    pub fn with_max_name_bytes(mut self, max_name_bytes: usize) -> Self {
        self.max_name_bytes = max_name_bytes;
        self
    }
}

impl Default for PriceTableLimits {
    fn default() -> Self {
        PriceTableLimits {
            max_bytes: 65_536,
            max_dimensions: 32,
            max_tiers: 32,
            max_name_bytes: 128,
        }
    }
}

/// Names accepted by [`PriceTable::preset`].
pub const PRICE_PRESETS: &str =
    "aws-us-east-1, aws-us-east-1-free-tier, azure-free, azure-s1, azure-s2, azure-s3, gcp";

const fn dollars_nanos(nanos: u128) -> Money {
    Money::from_nanos(nanos)
}

const MILLION: u64 = 1_000_000;
const BILLION: u64 = 1_000_000_000;
const MIB: u64 = 1_048_576;

impl PriceTable {
    /// The built-in table with this name (see [`PRICE_PRESETS`]).
    pub fn preset(name: &str) -> Result<PriceTable> {
        match name {
            "aws-us-east-1" => Ok(Self::aws_us_east_1(false)),
            "aws-us-east-1-free-tier" => Ok(Self::aws_us_east_1(true)),
            "azure-free" => Ok(Self::azure("azure-free", 8_000, Money::ZERO)),
            "azure-s1" => Ok(Self::azure(
                "azure-s1",
                400_000,
                dollars_nanos(25_000_000_000),
            )),
            "azure-s2" => Ok(Self::azure(
                "azure-s2",
                6_000_000,
                dollars_nanos(250_000_000_000),
            )),
            "azure-s3" => Ok(Self::azure(
                "azure-s3",
                300_000_000,
                dollars_nanos(2_500_000_000_000),
            )),
            "gcp" => Ok(Self::gcp()),
            _ => Err(Error::UnknownPreset {
                name: name.chars().take(64).collect(),
                known: PRICE_PRESETS,
            }),
        }
    }

    fn aws_us_east_1(free_tier: bool) -> PriceTable {
        use PacketKind::*;
        let per_million = |nanos| UnitPrice::new(dollars_nanos(nanos), MILLION);
        let free = |n: u64| if free_tier { n } else { 0 };
        PriceTable {
            name: if free_tier {
                "aws-us-east-1-free-tier".into()
            } else {
                "aws-us-east-1".into()
            },
            version: "2025-01-01".into(),
            currency: "USD".into(),
            metering: MeteringPolicy::aws(),
            dimensions: vec![
                PriceDimension {
                    name: "messaging".into(),
                    kinds: KindSet::of(&[Publish, Receive, Retained]),
                    free_units: free(500_000),
                    tiers: vec![
                        Tier {
                            up_to: Some(BILLION),
                            price: per_million(1_000_000_000),
                        },
                        Tier {
                            up_to: Some(5 * BILLION),
                            price: per_million(800_000_000),
                        },
                        Tier {
                            up_to: None,
                            price: per_million(700_000_000),
                        },
                    ],
                },
                PriceDimension {
                    name: "connectivity".into(),
                    kinds: KindSet::of(&[ConnectionMinutes]),
                    free_units: free(2_250_000),
                    tiers: vec![Tier {
                        up_to: None,
                        price: per_million(80_000_000),
                    }],
                },
                PriceDimension {
                    name: "shadow and registry".into(),
                    kinds: KindSet::of(&[Shadow, Registry]),
                    free_units: free(225_000),
                    tiers: vec![Tier {
                        up_to: None,
                        price: per_million(1_250_000_000),
                    }],
                },
            ],
            provisioned: None,
        }
    }

    fn azure(name: &str, per_day: u64, price: Money) -> PriceTable {
        use PacketKind::*;
        PriceTable {
            name: name.into(),
            version: "2025-01-01".into(),
            currency: "USD".into(),
            metering: if name == "azure-free" {
                MeteringPolicy::azure_free()
            } else {
                MeteringPolicy::azure()
            },
            dimensions: Vec::new(),
            provisioned: Some(ProvisionedPlan {
                name: format!("{} units", name.trim_start_matches("azure-").to_uppercase()),
                kinds: KindSet::of(&[Publish, Receive, Retained, Shadow]),
                units_per_day: per_day,
                price_per_unit: price,
                min_units: 1,
            }),
        }
    }

    fn gcp() -> PriceTable {
        use PacketKind::*;
        let per_mib = |nanos| UnitPrice::new(dollars_nanos(nanos), MIB);
        PriceTable {
            name: "gcp".into(),
            version: "2025-01-01".into(),
            currency: "USD".into(),
            metering: MeteringPolicy::gcp(),
            dimensions: vec![PriceDimension {
                name: "data volume".into(),
                kinds: KindSet::of(&[
                    Publish, Receive, Connect, Subscribe, Puback, Ping, Retained, Shadow, Registry,
                ]),
                free_units: 250 * MIB,
                tiers: vec![
                    Tier {
                        up_to: Some(250 * 1024 * MIB),
                        price: per_mib(4_500_000),
                    },
                    Tier {
                        up_to: Some(5 * 1024 * 1024 * MIB),
                        price: per_mib(2_000_000),
                    },
                    Tier {
                        up_to: None,
                        price: per_mib(450_000),
                    },
                ],
            }],
            provisioned: None,
        }
    }

    /// Parses and validates a price table from untrusted JSON bytes.
    pub fn parse(bytes: &[u8], limits: &PriceTableLimits) -> Result<PriceTable> {
        if bytes.len() > limits.max_bytes {
            return Err(Error::TooLarge {
                what: "price table",
                len: bytes.len(),
                limit: limits.max_bytes,
            });
        }
        let table: PriceTable =
            serde_json::from_slice(bytes).map_err(|e| Error::json("price table", &e))?;
        table.validate(limits)?;
        Ok(table)
    }

    /// Checks names, tier order, that every dimension ends with an unbounded tier and that no
    /// kind is priced twice.
    pub fn validate(&self, limits: &PriceTableLimits) -> Result<()> {
        for (field, value) in [
            ("name", &self.name),
            ("version", &self.version),
            ("currency", &self.currency),
            ("metering.name", &self.metering.name),
        ] {
            if value.is_empty() || value.len() > limits.max_name_bytes {
                return Err(Error::field(
                    field,
                    format!("must be 1 to {} bytes", limits.max_name_bytes),
                ));
            }
        }
        self.metering.validate()?;
        if self.dimensions.len() > limits.max_dimensions {
            return Err(Error::field(
                "dimensions",
                format!("more than {} dimensions", limits.max_dimensions),
            ));
        }
        let mut priced = KindSet::EMPTY;
        for (i, dim) in self.dimensions.iter().enumerate() {
            let at = |f: &str| format!("dimensions[{i}].{f}");
            if dim.name.is_empty() || dim.name.len() > limits.max_name_bytes {
                return Err(Error::field(at("name"), "empty or too long"));
            }
            if let Some(k) = dim.kinds.iter().find(|k| priced.contains(*k)) {
                return Err(Error::field(at("kinds"), format!("`{k}` is priced twice")));
            }
            priced = KindSet::of(&priced.iter().chain(dim.kinds.iter()).collect::<Vec<_>>());
            if dim.tiers.is_empty() || dim.tiers.len() > limits.max_tiers {
                return Err(Error::field(
                    at("tiers"),
                    format!("must have 1 to {} tiers", limits.max_tiers),
                ));
            }
            let mut prev = 0u64;
            let last = dim.tiers.len() - 1;
            for (t, tier) in dim.tiers.iter().enumerate() {
                match (tier.up_to, t == last) {
                    (None, true) => {}
                    (None, false) => {
                        return Err(Error::field(
                            at(&format!("tiers[{t}].up_to")),
                            "only the last tier may be unbounded",
                        ));
                    }
                    (Some(_), true) => {
                        return Err(Error::field(
                            at(&format!("tiers[{t}].up_to")),
                            "the last tier must be unbounded (null)",
                        ));
                    }
                    (Some(up), false) if up <= prev => {
                        return Err(Error::field(
                            at(&format!("tiers[{t}].up_to")),
                            "tier bounds must increase strictly",
                        ));
                    }
                    (Some(up), false) => prev = up,
                }
                if tier.price.per == 0 {
                    return Err(Error::field(
                        at(&format!("tiers[{t}].price.per")),
                        "must be at least 1",
                    ));
                }
            }
        }
        if let Some(p) = &self.provisioned {
            if p.units_per_day == 0 {
                return Err(Error::field(
                    "provisioned.units_per_day",
                    "must be at least 1",
                ));
            }
            if p.name.is_empty() || p.name.len() > limits.max_name_bytes {
                return Err(Error::field("provisioned.name", "empty or too long"));
            }
        }
        Ok(())
    }

    /// `name@version`, as printed on bills.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The charge for the units of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierCharge {
    /// First cumulative unit of the tier.
    pub from: u64,
    /// Bound (exclusive) of the tier, `None` if unbounded.
    pub up_to: Option<u64>,
    /// Units of this month that fell in the tier.
    pub units: u64,
    /// Of those, units covered by the free allowance.
    pub free_units: u64,
    /// Price per unit in the tier.
    pub unit_price: UnitPrice,
    /// `(units - free_units) × unit_price`.
    pub amount: Money,
}

/// One line of a bill: a priced dimension or the provisioned plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineItem {
    /// Dimension or plan name.
    pub dimension: String,
    /// Metered quantity: operations (messages), or minutes for connectivity.
    pub quantity: u64,
    /// Billable units (for a provisioned plan: provisioned units).
    pub billable_units: u64,
    /// The unit price when one tier applies (the first tier's price otherwise; see `tiers`).
    pub unit_price: UnitPrice,
    /// Per-tier breakdown (empty for a provisioned plan).
    pub tiers: Vec<TierCharge>,
    /// The line's amount.
    pub amount: Money,
}

/// One account's bill for one UTC month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bill {
    /// The account billed.
    pub account: String,
    /// The UTC month billed, `YYYY-MM`.
    pub period: Month,
    /// `name@version` of the price table.
    pub price_table: String,
    /// Currency of every amount.
    pub currency: String,
    /// Line items in price-table order.
    pub line_items: Vec<LineItem>,
    /// Sum of the line items.
    pub total: Money,
}

/// Rates `units` cumulative monthly units through graduated `tiers`, the first `free` units
/// free. Returns the per-tier charges and their sum.
pub fn rate_tiers(units: u64, free: u64, tiers: &[Tier]) -> Result<(Vec<TierCharge>, Money)> {
    let mut charges = Vec::new();
    let mut total = Money::ZERO;
    let mut from = 0u64;
    for tier in tiers {
        if from >= units {
            break;
        }
        let hi = tier.up_to.unwrap_or(u64::MAX).min(units);
        if hi <= from {
            continue;
        }
        let in_tier = hi - from;
        let free_here = free.clamp(from, hi) - from;
        let amount = tier.price.charge(in_tier - free_here)?;
        total = total.checked_add(amount)?;
        charges.push(TierCharge {
            from,
            up_to: tier.up_to,
            units: in_tier,
            free_units: free_here,
            unit_price: tier.price,
            amount,
        });
        from = hi;
    }
    Ok((charges, total))
}

#[derive(Debug, Default, Clone)]
struct AccountMonth {
    /// Per dimension index: (quantity, units).
    dimensions: BTreeMap<usize, (u64, u64)>,
    /// Provisioned kinds: (quantity, units per day).
    provisioned_quantity: u64,
    provisioned_days: BTreeMap<Day, u64>,
}

/// Adds `quantity` and `units` of `kind`, used by `account` at `time`, to the run's accounts.
fn count(
    table: &PriceTable,
    accounts: &mut BTreeMap<(String, Month), AccountMonth>,
    account: &str,
    kind: PacketKind,
    time: u64,
    quantity: u64,
    units: u64,
) -> Result<()> {
    let entry = accounts
        .entry((account.to_owned(), Month::of(time)))
        .or_default();
    if let Some(i) = table.dimensions.iter().position(|d| d.kinds.contains(kind)) {
        let slot = entry.dimensions.entry(i).or_default();
        slot.0 = slot
            .0
            .checked_add(quantity)
            .ok_or(Error::Overflow("quantity"))?;
        slot.1 = slot.1.checked_add(units).ok_or(Error::Overflow("units"))?;
    }
    if let Some(plan) = &table.provisioned
        && plan.kinds.contains(kind)
    {
        entry.provisioned_quantity = entry.provisioned_quantity.saturating_add(quantity);
        let day = entry.provisioned_days.entry(Day::of(time)).or_default();
        *day = day.checked_add(units).ok_or(Error::Overflow("units"))?;
    }
    Ok(())
}

/// Accumulates usage events (or a meter's aggregated totals) into bills. Repeated event ids are
/// ignored (idempotency).
#[derive(Debug)]
pub struct BillingRun {
    table: PriceTable,
    seen: HashSet<String>,
    accounts: BTreeMap<(String, Month), AccountMonth>,
}

/// What [`BillingRun::add`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The event was counted.
    Counted,
    /// An event with the same id was already counted; this one was ignored.
    Duplicate,
}

impl BillingRun {
    /// A run that prices with `table`.
    pub fn new(table: PriceTable) -> BillingRun {
        BillingRun {
            table,
            seen: HashSet::new(),
            accounts: BTreeMap::new(),
        }
    }

    /// The price table in use.
    pub fn table(&self) -> &PriceTable {
        &self.table
    }

    /// Counts one event, unless its id was seen before.
    pub fn add(&mut self, event: &UsageEvent) -> Result<Added> {
        if self.seen.contains(event.id()) {
            return Ok(Added::Duplicate);
        }
        let units = event.units(&self.table.metering);
        count(
            &self.table,
            &mut self.accounts,
            event.account(),
            event.kind(),
            event.time(),
            event.quantity(),
            units,
        )?;
        self.seen.insert(event.id().to_owned());
        Ok(Added::Counted)
    }

    /// Counts aggregated totals — a node's [`Meter::totals`](crate::meter::Meter::totals) or a
    /// fleet's [`NodeAggregate::totals`](crate::meter::NodeAggregate::totals) — instead of one
    /// event per message. The units in `totals` were computed when the messages were metered,
    /// so `metered_with` must be the price table's own metering policy, and `granularity` the
    /// windows the totals were aggregated into: a table with provisioned (daily) units needs
    /// hourly or daily windows. Either mismatch is an error and counts nothing, as is an
    /// overflow. Totals carry no ids: adding the same totals twice counts them twice.
    ///
    /// Pricing a meter's totals gives the same bills as pricing, one by one, the events the
    /// meter recorded.
    ///
    /// ```
    /// use thingkit_meter::{Granularity, Meter};
    /// use thingkit_meter::{MeteringPolicy, PacketKind};
    /// use thingkit_meter::{BillingRun, PriceTable};
    /// use thingkit_meter::{UsageEvent, UsageLimits};
    ///
    /// # fn main() -> Result<(), thingkit_meter::Error> {
    /// let table = PriceTable::preset("aws-us-east-1")?;
    /// let meter = Meter::new("node-1", table.metering.clone(), Granularity::Day, 1000)?;
    /// for i in 0..3 {
    ///     let e = UsageEvent::new(format!("e{i}"), "acme", "d1", PacketKind::Publish,
    ///         1_764_115_200, &UsageLimits::default())?.with_bytes(8192);
    ///     meter.record(&e)?;
    /// }
    /// let mut run = BillingRun::new(table);
    /// run.add_totals(&meter.totals(), meter.policy(), meter.granularity())?;
    /// assert_eq!(run.bills()?[0].line_items[0].billable_units, 6); // 3 messages × 2 units
    /// # Ok(()) }
    /// ```
    pub fn add_totals(
        &mut self,
        totals: &BTreeMap<UsageKey, Counts>,
        metered_with: &MeteringPolicy,
        granularity: Granularity,
    ) -> Result<()> {
        if *metered_with != self.table.metering {
            return Err(Error::Config {
                field: "metered_with",
                reason: "the totals were metered with a policy other than the price table's",
            });
        }
        if granularity == Granularity::Month && self.table.provisioned.is_some() {
            return Err(Error::Config {
                field: "granularity",
                reason: "provisioned units are sized per day: price hourly or daily totals",
            });
        }
        // All or nothing: count into a copy, keep it only if every key counted.
        let mut accounts = self.accounts.clone();
        for (key, c) in totals {
            let quantity = if key.kind == PacketKind::ConnectionMinutes {
                c.minutes
            } else {
                c.messages
            };
            count(
                &self.table,
                &mut accounts,
                &key.account,
                key.kind,
                key.window,
                quantity,
                c.units,
            )?;
        }
        self.accounts = accounts;
        Ok(())
    }

    /// The bills, one per account and month, ordered by account then month.
    pub fn bills(&self) -> Result<Vec<Bill>> {
        let mut out = Vec::with_capacity(self.accounts.len());
        for ((account, month), usage) in &self.accounts {
            let mut line_items = Vec::new();
            let mut total = Money::ZERO;
            for (i, dim) in self.table.dimensions.iter().enumerate() {
                let Some(&(quantity, units)) = usage.dimensions.get(&i) else {
                    continue;
                };
                let (tiers, amount) = rate_tiers(units, dim.free_units, &dim.tiers)?;
                total = total.checked_add(amount)?;
                let unit_price = tiers
                    .first()
                    .map(|t| t.unit_price)
                    .or_else(|| dim.tiers.first().map(|t| t.price))
                    .unwrap_or(UnitPrice::FREE);
                line_items.push(LineItem {
                    dimension: dim.name.clone(),
                    quantity,
                    billable_units: units,
                    unit_price,
                    tiers,
                    amount,
                });
            }
            if let Some(plan) = &self.table.provisioned
                && !usage.provisioned_days.is_empty()
            {
                let needed = usage
                    .provisioned_days
                    .values()
                    .map(|u| plan.units_needed(*u))
                    .max()
                    .unwrap_or(plan.min_units);
                let price = UnitPrice::new(plan.price_per_unit, 1);
                let amount = price.charge(needed)?;
                total = total.checked_add(amount)?;
                line_items.push(LineItem {
                    dimension: plan.name.clone(),
                    quantity: usage.provisioned_quantity,
                    billable_units: needed,
                    unit_price: price,
                    tiers: Vec::new(),
                    amount,
                });
            }
            out.push(Bill {
                account: account.clone(),
                period: *month,
                price_table: self.table.label(),
                currency: self.table.currency.clone(),
                line_items,
                total,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws_messaging() -> PriceDimension {
        PriceTable::preset("aws-us-east-1").unwrap().dimensions[0].clone()
    }

    fn amount(units: u64, free: u64) -> String {
        let d = aws_messaging();
        rate_tiers(units, free, &d.tiers).unwrap().1.to_string()
    }

    #[test]
    fn tier_boundary_at_exactly_one_billion() {
        assert_eq!(amount(BILLION, 0), "1000.00");
        assert_eq!(amount(BILLION + 1, 0), "1000.0000008");
        let (charges, _) = rate_tiers(BILLION, 0, &aws_messaging().tiers).unwrap();
        assert_eq!(charges.len(), 1, "exactly 1e9 stays in the first tier");
    }

    #[test]
    fn tier_boundary_at_exactly_five_billion() {
        // 1e9 × $1/M + 4e9 × $0.80/M = 1000 + 3200
        assert_eq!(amount(5 * BILLION, 0), "4200.00");
        assert_eq!(amount(5 * BILLION + MILLION, 0), "4200.70");
        let (charges, _) = rate_tiers(5 * BILLION, 0, &aws_messaging().tiers).unwrap();
        assert_eq!(charges.len(), 2);
        assert_eq!(charges[1].units, 4 * BILLION);
    }

    #[test]
    fn free_allowance_is_used_first() {
        assert_eq!(amount(500_000, 500_000), "0.00");
        assert_eq!(amount(1_500_000, 500_000), "1.00");
        // The free units sit in the first tier; the tier thresholds still count them.
        assert_eq!(amount(BILLION + MILLION, 500_000), "1000.30");
    }

    #[test]
    fn free_allowance_larger_than_first_tier_spills_into_the_next() {
        let tiers = [
            Tier {
                up_to: Some(10),
                price: UnitPrice::new(Money::from_nanos(5), 1),
            },
            Tier {
                up_to: None,
                price: UnitPrice::new(Money::from_nanos(3), 1),
            },
        ];
        let (charges, total) = rate_tiers(20, 15, &tiers).unwrap();
        assert_eq!(charges[0].free_units, 10);
        assert_eq!(charges[1].free_units, 5);
        assert_eq!(total.nanos(), 15);
    }

    #[test]
    fn azure_provisioned_units_follow_the_busiest_day() {
        let plan = PriceTable::preset("azure-s1").unwrap();
        let mut run = BillingRun::new(plan);
        let limits = crate::usage::UsageLimits::default();
        // 400,001 messages on one day need 2 S1 units; another day's usage is smaller.
        let day1 = 1_764_115_200;
        for i in 0..400_001u64 {
            let e = UsageEvent::new(
                format!("a{i}"),
                "acme",
                "d",
                PacketKind::Publish,
                day1,
                &limits,
            )
            .unwrap()
            .with_bytes(100);
            run.add(&e).unwrap();
        }
        let e = UsageEvent::new(
            "b",
            "acme",
            "d",
            PacketKind::Publish,
            day1 + 86_400,
            &limits,
        )
        .unwrap();
        run.add(&e).unwrap();
        let bills = run.bills().unwrap();
        assert_eq!(bills[0].line_items[0].billable_units, 2);
        assert_eq!(bills[0].total.to_string(), "50.00");
    }

    #[test]
    fn billing_run_ignores_repeated_ids() {
        let mut run = BillingRun::new(PriceTable::preset("aws-us-east-1").unwrap());
        let limits = crate::usage::UsageLimits::default();
        let e = UsageEvent::new("x", "acme", "d", PacketKind::Publish, 0, &limits)
            .unwrap()
            .with_bytes(8192);
        assert_eq!(run.add(&e).unwrap(), Added::Counted);
        assert_eq!(run.add(&e).unwrap(), Added::Duplicate);
        let bills = run.bills().unwrap();
        assert_eq!(bills[0].line_items[0].billable_units, 2);
        assert_eq!(bills[0].total.nanos(), 2_000);
    }

    #[test]
    fn every_preset_is_valid_and_roundtrips_through_json() {
        for name in PRICE_PRESETS.split(", ") {
            let t = PriceTable::preset(name).unwrap();
            t.validate(&PriceTableLimits::default()).unwrap();
            let json = serde_json::to_vec(&t).unwrap();
            assert_eq!(
                PriceTable::parse(&json, &PriceTableLimits::default()).unwrap(),
                t
            );
        }
    }

    #[test]
    fn rejects_tables_with_unordered_tiers_or_a_kind_priced_twice() {
        let limits = PriceTableLimits::default();
        let mut t = PriceTable::preset("aws-us-east-1").unwrap();
        t.dimensions[0].tiers[1].up_to = Some(10);
        let err = t.validate(&limits).unwrap_err().to_string();
        assert!(err.contains("dimensions[0].tiers[1].up_to"), "{err}");
        let mut t = PriceTable::preset("aws-us-east-1").unwrap();
        t.dimensions[1].kinds = KindSet::of(&[PacketKind::Publish]);
        assert!(
            t.validate(&limits)
                .unwrap_err()
                .to_string()
                .contains("priced twice")
        );
        let mut t = PriceTable::preset("aws-us-east-1").unwrap();
        t.dimensions[0].tiers[2].up_to = Some(u64::MAX);
        assert!(t.validate(&limits).is_err());
    }
}
