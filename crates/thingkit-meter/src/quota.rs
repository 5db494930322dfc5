//! Daily and monthly quotas; documented on [`Quotas`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::calendar::{Day, Month};
use crate::error::{Error, Result};
use crate::rating::ProvisionedPlan;

/// An account's quota configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaConfig {
    /// Units per UTC day, if limited.
    pub daily_units: Option<u64>,
    /// Units per UTC month, if limited.
    pub monthly_units: Option<u64>,
    /// Warn when usage crosses this fraction of a limit, in thousandths (default 800 = 80 %).
    pub warn_permille: u16,
}

impl QuotaConfig {
    /// This value with [`daily_units`](Self::daily_units) replaced.
    pub fn with_daily_units(mut self, daily_units: Option<u64>) -> Self {
        self.daily_units = daily_units;
        self
    }

    /// This value with [`monthly_units`](Self::monthly_units) replaced.
    pub fn with_monthly_units(mut self, monthly_units: Option<u64>) -> Self {
        self.monthly_units = monthly_units;
        self
    }

    /// This value with [`warn_permille`](Self::warn_permille) replaced.
    pub fn with_warn_permille(mut self, warn_permille: u16) -> Self {
        self.warn_permille = warn_permille;
        self
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            daily_units: None,
            monthly_units: None,
            warn_permille: 800,
        }
    }
}

impl QuotaConfig {
    /// The daily quota of `units` provisioned units of an Azure-style plan.
    pub fn provisioned(plan: &ProvisionedPlan, units: u64) -> QuotaConfig {
        QuotaConfig {
            daily_units: Some(plan.units_per_day.saturating_mul(units)),
            ..QuotaConfig::default()
        }
    }
}

/// A quota period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    /// The UTC day.
    Daily,
    /// The UTC month.
    Monthly,
}

impl QuotaPeriod {
    fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Daily => "daily",
            QuotaPeriod::Monthly => "monthly",
        }
    }
}

/// Usage crossed the warning fraction of a quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaEvent {
    /// The account.
    pub account: String,
    /// Which quota.
    pub period: QuotaPeriod,
    /// Units used in the period after the admitted request.
    pub used: u64,
    /// The quota.
    pub limit: u64,
    /// The warning fraction that was crossed, in thousandths.
    pub warn_permille: u16,
}

#[derive(Debug, Clone, Copy)]
struct AccountState {
    day: Day,
    day_used: u64,
    month: Month,
    month_used: u64,
}

/// Per-account quota counters. `Sync`; one mutex guards all accounts (admission is per request,
/// not per byte; shard by account upstream if it ever shows in a profile).
///
/// Daily and monthly (UTC) quotas per account, checked at admission.
///
/// [`Quotas::admit`] either reserves the requested units in both the day's and the month's
/// counters or refuses with [`Error::QuotaExhausted`] and reserves nothing. When a reservation
/// makes usage cross the warning fraction (default 80 %) of a limit, the call returns a
/// [`QuotaEvent`] once for that period. Counters reset at 00:00 UTC and on the first of the month;
/// a request time earlier than the current period (a clock step backwards) counts in the current
/// period.
#[derive(Debug)]
pub struct Quotas {
    default: QuotaConfig,
    overrides: HashMap<String, QuotaConfig>,
    max_accounts: usize,
    state: Mutex<HashMap<String, AccountState>>,
}

fn threshold(limit: u64, permille: u16) -> u64 {
    let t = (u128::from(limit) * u128::from(permille)).div_ceil(1000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

impl Quotas {
    /// Quotas with `default` for every account, `overrides` for some, tracking at most
    /// `max_accounts` accounts.
    pub fn new(
        default: QuotaConfig,
        overrides: HashMap<String, QuotaConfig>,
        max_accounts: usize,
    ) -> Result<Quotas> {
        for q in std::iter::once(&default).chain(overrides.values()) {
            if q.warn_permille == 0 || q.warn_permille > 1000 {
                return Err(Error::Config {
                    field: "warn_permille",
                    reason: "must be 1 to 1000",
                });
            }
        }
        Ok(Quotas {
            default,
            overrides,
            max_accounts,
            state: Mutex::new(HashMap::new()),
        })
    }

    fn config(&self, account: &str) -> &QuotaConfig {
        self.overrides.get(account).unwrap_or(&self.default)
    }

    /// Reserves `units` for `account` at `unix_secs`, or refuses. Returns warning events crossed by
    /// this reservation.
    pub fn admit(&self, account: &str, units: u64, unix_secs: u64) -> Result<Vec<QuotaEvent>> {
        let cfg = *self.config(account);
        let day = Day::of(unix_secs);
        let month = Month::of(unix_secs);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.contains_key(account) && state.len() >= self.max_accounts {
            return Err(Error::TooManyKeys {
                what: "quotas",
                limit: self.max_accounts,
            });
        }
        let s = state.entry(account.to_owned()).or_insert(AccountState {
            day,
            day_used: 0,
            month,
            month_used: 0,
        });
        if day > s.day {
            s.day = day;
            s.day_used = 0;
        }
        if month > s.month {
            s.month = month;
            s.month_used = 0;
        }
        let checks = [
            (QuotaPeriod::Daily, cfg.daily_units, s.day_used),
            (QuotaPeriod::Monthly, cfg.monthly_units, s.month_used),
        ];
        for (period, limit, used) in checks {
            if let Some(limit) = limit
                && used.checked_add(units).is_none_or(|after| after > limit)
            {
                return Err(Error::QuotaExhausted {
                    account: account.to_owned(),
                    period: period.as_str(),
                    limit,
                    used,
                    requested: units,
                });
            }
        }
        let mut events = Vec::new();
        for (period, limit, used) in checks {
            if let Some(limit) = limit {
                let t = threshold(limit, cfg.warn_permille);
                let after = used + units;
                if used < t && after >= t {
                    events.push(QuotaEvent {
                        account: account.to_owned(),
                        period,
                        used: after,
                        limit,
                        warn_permille: cfg.warn_permille,
                    });
                }
            }
        }
        s.day_used = s.day_used.saturating_add(units);
        s.month_used = s.month_used.saturating_add(units);
        Ok(events)
    }

    /// Units used by `account` in the day and month containing `unix_secs`.
    pub fn used(&self, account: &str, unix_secs: u64) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.get(account) {
            None => (0, 0),
            Some(s) => (
                if s.day == Day::of(unix_secs) {
                    s.day_used
                } else {
                    0
                },
                if s.month == Month::of(unix_secs) {
                    s.month_used
                } else {
                    0
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(daily: Option<u64>, monthly: Option<u64>) -> Quotas {
        Quotas::new(
            QuotaConfig {
                daily_units: daily,
                monthly_units: monthly,
                warn_permille: 800,
            },
            HashMap::new(),
            100,
        )
        .unwrap()
    }

    const NOV_26: u64 = 1_764_115_200;

    #[test]
    fn refuses_with_a_distinct_error_when_the_daily_quota_is_exhausted() {
        let q = quotas(Some(10), None);
        q.admit("a", 10, NOV_26).unwrap();
        let err = q.admit("a", 1, NOV_26 + 60).unwrap_err();
        assert!(matches!(
            err,
            Error::QuotaExhausted {
                period: "daily",
                limit: 10,
                used: 10,
                requested: 1,
                ..
            }
        ));
        // A refused request reserves nothing.
        assert_eq!(q.used("a", NOV_26), (10, 10));
    }

    #[test]
    fn daily_quota_resets_at_utc_midnight_but_monthly_does_not() {
        let q = quotas(Some(10), Some(15));
        q.admit("a", 10, NOV_26 + 86_399).unwrap();
        q.admit("a", 5, NOV_26 + 86_400).unwrap();
        let err = q.admit("a", 1, NOV_26 + 86_401).unwrap_err();
        assert!(matches!(
            err,
            Error::QuotaExhausted {
                period: "monthly",
                ..
            }
        ));
        // December 1st, 00:00 UTC resets the month.
        let dec_1 = 1_764_547_200;
        q.admit("a", 10, dec_1).unwrap();
    }

    #[test]
    fn warns_once_when_crossing_eighty_percent() {
        let q = quotas(Some(100), Some(1000));
        assert!(q.admit("a", 79, NOV_26).unwrap().is_empty());
        let ev = q.admit("a", 1, NOV_26).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].period, ev[0].used, ev[0].limit),
            (QuotaPeriod::Daily, 80, 100)
        );
        assert!(q.admit("a", 1, NOV_26).unwrap().is_empty());
        // A jump over both thresholds reports both.
        let q = quotas(Some(100), Some(100));
        assert_eq!(q.admit("a", 90, NOV_26).unwrap().len(), 2);
    }

    #[test]
    fn accounts_are_separate_and_capped() {
        let q = Quotas::new(
            QuotaConfig {
                daily_units: Some(1),
                ..QuotaConfig::default()
            },
            HashMap::from([("big".to_owned(), QuotaConfig::default())]),
            2,
        )
        .unwrap();
        q.admit("a", 1, 0).unwrap();
        q.admit("big", 1_000_000, 0).unwrap();
        assert!(matches!(q.admit("c", 1, 0), Err(Error::TooManyKeys { .. })));
    }

    #[test]
    fn provisioned_plan_sets_the_daily_quota() {
        let t = crate::rating::PriceTable::preset("azure-s1").unwrap();
        let cfg = QuotaConfig::provisioned(t.provisioned.as_ref().unwrap(), 3);
        assert_eq!(cfg.daily_units, Some(1_200_000));
    }

    #[test]
    fn overflowing_request_is_refused_not_wrapped() {
        let q = quotas(Some(u64::MAX), None);
        q.admit("a", u64::MAX, 0).unwrap();
        assert!(q.admit("a", 1, 0).is_err());
    }
}
