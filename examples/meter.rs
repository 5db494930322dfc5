//! Metering a small fleet end to end: units, rate limits, quotas, a durable ledger and a bill.
//!
//! ```sh
//! cargo run --example meter
//! ```

use thingkit::meter::{Appended, Ledger, LedgerConfig};
use thingkit::meter::{BillingRun, PriceTable};
use thingkit::meter::{ConnectionTable, Granularity, Meter};
use thingkit::meter::{MeteringPolicy, PacketKind};
use thingkit::meter::{Nanos, RateDecision, RateLimits};
use thingkit::meter::{QuotaConfig, Quotas};
use thingkit::meter::{UsageEvent, UsageLimits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now_unix = 1_764_115_200; // 2025-11-26T00:00:00Z
    let aws = MeteringPolicy::aws();
    println!(
        "an 8 KB publish is {} AWS units",
        aws.units(PacketKind::Publish, 8192)
    );

    // Hot path: per-connection GCRA limits (AWS defaults: 100 publishes/s, 512 KiB/s) + counters.
    let table = ConnectionTable::new(aws.clone(), &RateLimits::aws_connection(), 10_000)?;
    let meter = Meter::new("node-1", aws.clone(), Granularity::Day, 100_000)?;
    let mut conn = table.connect("acme", now_unix)?;
    let (mut allowed, mut refused) = (0, 0);
    for i in 0..150u64 {
        // 150 publishes within 150 ms: the burst of 100 plus one refill per 10 ms pass; the rest
        // is refused (PUBACK 0x96).
        match table.record_publish(&mut conn, 1_000, false, Nanos::from_millis(i))? {
            RateDecision::Allow => allowed += 1,
            RateDecision::Limited { .. } => refused += 1,
        }
    }
    println!("publishes allowed {allowed}, refused {refused}");
    table.disconnect(conn, "sensor-7", &meter, now_unix + 3_600)?; // one hour: 60 connection minutes
    for (key, counts) in meter.totals() {
        println!(
            "meter: {}/{} {} -> {:?}",
            key.account, key.device, key.kind, counts
        );
    }

    // Admission quotas: a daily quota with an 80 % warning.
    let quotas = Quotas::new(
        QuotaConfig::default().with_daily_units(Some(100)),
        Default::default(),
        1000,
    )?;
    for event in quotas.admit("acme", 85, now_unix)? {
        println!(
            "quota warning: {:?} {}/{}",
            event.period, event.used, event.limit
        );
    }
    if let Err(e) = quotas.admit("acme", 20, now_unix) {
        println!("refused: {e}");
    }

    // Durable ledger: the same id twice is stored once.
    let dir = std::env::temp_dir().join(format!("thingkit-meter-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ledger = Ledger::open(dir.join("usage.redb"), LedgerConfig::default())?;
    let limits = UsageLimits::default();
    let e1 = UsageEvent::new(
        "e1",
        "acme",
        "sensor-7",
        PacketKind::Publish,
        now_unix,
        &limits,
    )?
    .with_bytes(8192);
    let e2 = UsageEvent::new(
        "e2",
        "acme",
        "sensor-7",
        PacketKind::ConnectionMinutes,
        now_unix,
        &limits,
    )?
    .with_minutes(1440);
    for e in [&e1, &e2, &e1] {
        match ledger.append(e)? {
            Appended::New(seq) => println!("ledger: stored {} as #{seq}", e.id()),
            Appended::Duplicate(seq) => println!("ledger: {} already stored as #{seq}", e.id()),
        }
    }

    // Bill from the ledger with the AWS us-east-1 table; money is exact.
    let mut run = BillingRun::new(PriceTable::preset("aws-us-east-1")?);
    ledger.bill_into(&mut run)?;
    let bills = run.bills()?;
    thingkit::meter::write_bills_jsonl(&mut std::io::stdout().lock(), &bills)?;
    drop(ledger);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
