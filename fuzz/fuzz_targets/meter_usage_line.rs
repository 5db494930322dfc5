//! Arbitrary bytes as a usage line and as a price table: never panics, and whatever parses
//! round-trips and can be billed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_meter::{BillingRun, PriceTable, PriceTableLimits, rate_tiers};
use thingkit_meter::{UsageEvent, UsageLimits};

fuzz_target!(|data: &[u8]| {
    let limits = UsageLimits::default();
    let event = UsageEvent::parse_line(data, &limits).ok();
    if let Some(e) = &event {
        let again = UsageEvent::parse_line(e.to_json_line().as_bytes(), &limits)
            .expect("a parsed event re-parses from its own JSON line");
        assert_eq!(&again, e);
    }

    let table_limits = PriceTableLimits::default();
    if let Ok(table) = PriceTable::parse(data, &table_limits) {
        let json = serde_json::to_vec(&table).expect("a price table serializes");
        let back = PriceTable::parse(&json, &table_limits).expect("a valid table re-parses");
        assert_eq!(back, table);
        for dim in &table.dimensions {
            for units in [0, 1, dim.free_units, u64::MAX] {
                let _ = rate_tiers(units, dim.free_units, &dim.tiers);
            }
        }
        let mut run = BillingRun::new(table);
        if let Some(e) = &event {
            let _ = run.add(e);
            let _ = run.add(e);
        }
        let _ = run.bills();
    }

    if let (Some(e), Ok(table)) = (&event, PriceTable::preset("aws-us-east-1")) {
        let mut run = BillingRun::new(table);
        let _ = run.add(e);
        let _ = run.bills();
    }
});
