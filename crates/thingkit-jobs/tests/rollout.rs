//! Rollout arithmetic against simple reference models (spec §B.4, J-12 and J-13).

use proptest::prelude::*;
use thingkit_jobs::rollout::{
    AbortConfig, AbortCriterion, AbortFailureType, ExponentialRate, OutcomeCounts, Percentage,
    RateIncreaseCriteria, RolloutConfig, rate_per_minute, should_abort,
};

fn config(base: u32, tenths: u32, n: Option<u32>, s: Option<u32>, max: u32) -> RolloutConfig {
    let criteria = RateIncreaseCriteria {
        number_of_notified_things: n,
        number_of_succeeded_things: s,
    };
    RolloutConfig::exponential(
        ExponentialRate::new(base, tenths, criteria).unwrap(),
        Some(max),
    )
    .unwrap()
}

/// `min(max, floor(base * (tenths / 10)^k))` with u128 arithmetic, for small k.
fn reference_rate(base: u32, tenths: u32, k: u32, max: u32) -> u32 {
    let num = u128::from(base) * u128::from(tenths).pow(k);
    let den = 10u128.pow(k);
    (num / den).min(u128::from(max)) as u32
}

proptest! {
    #[test]
    fn exponential_rate_matches_exact_rational_arithmetic(
        base in 1u32..=1000,
        tenths in 11u32..=50,
        threshold in 1u32..=50,
        k in 0u32..=18,
        extra in 0u32..50,
        max in 1u32..=1000,
    ) {
        let c = config(base, tenths, Some(threshold), None, max);
        let notified = u64::from(threshold) * u64::from(k) + u64::from(extra % threshold);
        prop_assert_eq!(rate_per_minute(&c, notified, 0), reference_rate(base, tenths, k, max));
    }

    #[test]
    fn exponential_rate_never_decreases_and_never_exceeds_max(
        base in 1u32..=1000,
        tenths in 11u32..=50,
        n in 1u32..=1000,
        s in 1u32..=1000,
        max in 1u32..=1000,
        notified in 0u64..100_000,
        succeeded in 0u64..100_000,
        more in 0u64..10_000,
    ) {
        let c = config(base, tenths, Some(n), Some(s), max);
        let r = rate_per_minute(&c, notified, succeeded);
        prop_assert!(r <= max && r >= 1.min(max));
        prop_assert!(rate_per_minute(&c, notified + more, succeeded) >= r);
        prop_assert!(rate_per_minute(&c, notified, succeeded + more) >= r);
        // The combined step count is the larger of the two (F-J11).
        let only_n = config(base, tenths, Some(n), None, max);
        let only_s = config(base, tenths, None, Some(s), max);
        prop_assert_eq!(
            r,
            rate_per_minute(&only_n, notified, 0).max(rate_per_minute(&only_s, 0, succeeded))
        );
    }

    #[test]
    fn abort_agrees_with_a_per_criterion_reference(
        succeeded in 0u64..2000,
        failed in 0u64..2000,
        rejected in 0u64..2000,
        timed_out in 0u64..2000,
        specs in proptest::collection::vec((0usize..4, 0u32..=10_000, 1u32..3000), 1..4),
    ) {
        let types = [
            AbortFailureType::Failed,
            AbortFailureType::Rejected,
            AbortFailureType::TimedOut,
            AbortFailureType::All,
        ];
        let criteria: Vec<_> = specs
            .iter()
            .map(|&(t, h, min)| {
                AbortCriterion::new(types[t], Percentage::from_hundredths(h).unwrap(), min).unwrap()
            })
            .collect();
        let config = AbortConfig::new(criteria).unwrap();
        let counts = OutcomeCounts { succeeded, failed, rejected, timed_out };
        let completed = succeeded + failed + rejected + timed_out;
        // Reference: the ratio compared as a fraction of hundredths, criterion by criterion.
        let expected = specs.iter().position(|&(t, h, min)| {
            let bad = [failed, rejected, timed_out, failed + rejected + timed_out][t];
            completed >= u64::from(min)
                && completed > 0
                && (bad as u128) * 10_000 >= u128::from(h) * (completed as u128)
        });
        prop_assert_eq!(should_abort(&config, &counts), expected);
    }

    #[test]
    fn percentage_reads_two_decimal_json_numbers_exactly(hundredths in 0u32..=10_000) {
        let value = f64::from(hundredths) / 100.0;
        prop_assert_eq!(Percentage::from_f64(value).unwrap().hundredths(), hundredths);
    }
}
