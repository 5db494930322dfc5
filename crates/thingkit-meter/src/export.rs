//! Export as JSON lines and CSV; documented on [`ExportFormat`].

use std::collections::BTreeMap;
use std::io::Write;

use crate::error::Result;
use crate::meter::{Counts, UsageKey};
use crate::rating::Bill;
use crate::usage::UsageEvent;

/// An export format.
///
/// Export of usage, meter totals and bills as JSON lines and CSV (RFC 4180).
///
/// Both formats are what analytics engines read without configuration: DuckDB's `read_json_auto`
/// / `read_csv_auto` and Spark's `spark.read.json` / `spark.read.option("header", true).csv`.
/// Money is written as an exact decimal string (`"1000.0000008"`), never as a float; cast it to a
/// `DECIMAL(38, 9)` when loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    JsonLines,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// Writes one CSV field, quoted when it contains a comma, quote, CR or LF.
fn field(out: &mut impl Write, value: &str) -> std::io::Result<()> {
    if value.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", value.replace('"', "\"\""))
    } else {
        out.write_all(value.as_bytes())
    }
}

fn row(out: &mut impl Write, fields: &[&str]) -> std::io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        field(out, f)?;
    }
    out.write_all(b"\n")
}

/// Writes usage events as JSON lines.
pub fn write_usage_jsonl<'a>(
    out: &mut impl Write,
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> Result<()> {
    for e in events {
        writeln!(out, "{}", e.to_json_line())?;
    }
    Ok(())
}

/// Writes the CSV header of [`write_usage_csv_row`].
pub fn write_usage_csv_header(out: &mut impl Write) -> Result<()> {
    Ok(row(out, USAGE_CSV_HEADER)?)
}

/// Writes one usage event as a CSV row (no header).
pub fn write_usage_csv_row(out: &mut impl Write, e: &UsageEvent) -> Result<()> {
    Ok(row(
        out,
        &[
            e.id(),
            e.account(),
            e.device(),
            e.kind().as_str(),
            &e.bytes().to_string(),
            &e.minutes().to_string(),
            &e.time().to_string(),
        ],
    )?)
}

/// Header of [`write_usage_csv`].
pub const USAGE_CSV_HEADER: &[&str] = &[
    "id", "account", "device", "kind", "bytes", "minutes", "time",
];

/// Writes usage events as CSV with a header row.
pub fn write_usage_csv<'a>(
    out: &mut impl Write,
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> Result<()> {
    write_usage_csv_header(out)?;
    for e in events {
        write_usage_csv_row(out, e)?;
    }
    Ok(())
}

/// Writes meter totals as CSV: `account,device,kind,window,messages,units,bytes,minutes`.
pub fn write_totals_csv(out: &mut impl Write, totals: &BTreeMap<UsageKey, Counts>) -> Result<()> {
    row(
        out,
        &[
            "account", "device", "kind", "window", "messages", "units", "bytes", "minutes",
        ],
    )?;
    for (k, c) in totals {
        row(
            out,
            &[
                &k.account,
                &k.device,
                k.kind.as_str(),
                &k.window.to_string(),
                &c.messages.to_string(),
                &c.units.to_string(),
                &c.bytes.to_string(),
                &c.minutes.to_string(),
            ],
        )?;
    }
    Ok(())
}

/// Writes bills as JSON lines, one bill per line.
pub fn write_bills_jsonl<'a>(
    out: &mut impl Write,
    bills: impl IntoIterator<Item = &'a Bill>,
) -> Result<()> {
    for b in bills {
        serde_json::to_writer(&mut *out, b).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Header of [`write_bills_csv`].
pub const BILL_CSV_HEADER: &[&str] = &[
    "account",
    "period",
    "price_table",
    "currency",
    "dimension",
    "quantity",
    "billable_units",
    "tier_from",
    "tier_up_to",
    "tier_units",
    "free_units",
    "unit_price",
    "unit_price_per",
    "amount",
    "bill_total",
];

/// Writes bills as CSV: one row per tier charge (one row per line item without tiers).
pub fn write_bills_csv<'a>(
    out: &mut impl Write,
    bills: impl IntoIterator<Item = &'a Bill>,
) -> Result<()> {
    row(out, BILL_CSV_HEADER)?;
    for b in bills {
        let period = b.period.to_string();
        let total = b.total.to_string();
        for item in &b.line_items {
            let qty = item.quantity.to_string();
            let units = item.billable_units.to_string();
            let mut emit = |from: String,
                            up_to: String,
                            tier_units: String,
                            free: String,
                            price: &crate::money::UnitPrice,
                            amount: String| {
                row(
                    out,
                    &[
                        &b.account,
                        &period,
                        &b.price_table,
                        &b.currency,
                        &item.dimension,
                        &qty,
                        &units,
                        &from,
                        &up_to,
                        &tier_units,
                        &free,
                        &price.amount.to_string(),
                        &price.per.to_string(),
                        &amount,
                        &total,
                    ],
                )
            };
            if item.tiers.is_empty() {
                emit(
                    String::new(),
                    String::new(),
                    units.clone(),
                    "0".into(),
                    &item.unit_price,
                    item.amount.to_string(),
                )?;
            }
            for t in &item.tiers {
                emit(
                    t.from.to_string(),
                    t.up_to.map(|u| u.to_string()).unwrap_or_default(),
                    t.units.to_string(),
                    t.free_units.to_string(),
                    &t.unit_price,
                    t.amount.to_string(),
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::PacketKind;
    use crate::rating::{BillingRun, PriceTable};
    use crate::usage::UsageLimits;

    #[test]
    fn csv_quotes_commas_and_quotes() {
        let e = UsageEvent::new(
            "i",
            "ac,me",
            "d\"1",
            PacketKind::Ping,
            3,
            &UsageLimits::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        write_usage_csv(&mut out, [&e]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "id,account,device,kind,bytes,minutes,time\ni,\"ac,me\",\"d\"\"1\",ping,0,0,3\n"
        );
    }

    #[test]
    fn bills_export_one_row_per_tier_and_one_json_line_per_bill() {
        let mut run = BillingRun::new(PriceTable::preset("aws-us-east-1").unwrap());
        let limits = UsageLimits::default();
        run.add(&UsageEvent::new("1", "a", "d", PacketKind::Publish, 0, &limits).unwrap())
            .unwrap();
        run.add(
            &UsageEvent::new("2", "a", "d", PacketKind::ConnectionMinutes, 0, &limits)
                .unwrap()
                .with_minutes(3),
        )
        .unwrap();
        let bills = run.bills().unwrap();
        let mut csv = Vec::new();
        write_bills_csv(&mut csv, &bills).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("a,1970-01,aws-us-east-1@")
        );
        let mut json = Vec::new();
        write_bills_jsonl(&mut json, &bills).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["total"], "0.00000124");
        assert_eq!(v["line_items"][0]["amount"], "0.000001");
    }
}
