//! Exact money; documented on [`Money`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Nano-units per currency unit.
pub const NANOS_PER_UNIT: u128 = 1_000_000_000;

/// Longest decimal text accepted for an amount.
const MAX_DECIMAL_LEN: usize = 40;

/// An exact, non-negative amount of money in nano-units of the currency.
///
/// Exact money: integer nano-dollars, never floating point.
///
/// A [`Money`] is a whole number of nano-units (10⁻⁹) of the price table's currency. Published IoT
/// prices have at most eight decimal places per unit (e.g. $0.08 per million minutes is
/// $0.00000008 per minute), so nano-units represent every list price and every per-unit charge
/// exactly. Amounts are parsed from and written as decimal strings (`"0.80"`), never as JSON
/// floats, so no value passes through `f64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(u128);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// The amount with this many nano-units.
    pub const fn from_nanos(nanos: u128) -> Money {
        Money(nanos)
    }

    /// The amount in nano-units.
    pub const fn nanos(self) -> u128 {
        self.0
    }

    /// `self + other`, or an overflow error.
    pub fn checked_add(self, other: Money) -> Result<Money> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(Error::Overflow("money sum"))
    }

    /// Parses a non-negative decimal such as `"1"`, `"0.80"` or `"0.00000008"` (at most nine
    /// fractional digits, no sign, no exponent).
    pub fn parse(text: &str) -> Result<Money> {
        let bad = |reason: &str| Error::field("amount", format!("`{}`: {reason}", truncate(text)));
        if text.is_empty() || text.len() > MAX_DECIMAL_LEN {
            return Err(bad("expected 1 to 40 characters"));
        }
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected digits before the decimal point"));
        }
        if text.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad("expected digits after the decimal point"));
        }
        if frac.len() > 9 {
            return Err(bad("more than nine fractional digits"));
        }
        let whole: u128 = whole.parse().map_err(|_| bad("too large"))?;
        let mut frac_nanos: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad("bad fraction"))?
        };
        for _ in frac.len()..9 {
            frac_nanos *= 10;
        }
        whole
            .checked_mul(NANOS_PER_UNIT)
            .and_then(|w| w.checked_add(frac_nanos))
            .map(Money)
            .ok_or_else(|| bad("too large"))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(MAX_DECIMAL_LEN) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl fmt::Display for Money {
    /// At least two decimals, more only when needed: `1.00`, `0.000004`, `1234.5678`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / NANOS_PER_UNIT;
        let frac = self.0 % NANOS_PER_UNIT;
        let mut digits = format!("{frac:09}");
        while digits.len() > 2 && digits.ends_with('0') {
            digits.pop();
        }
        write!(f, "{whole}.{digits}")
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Money, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Money::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A price: `amount` for every `per` units (e.g. 1.00 per 1,000,000 messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitPrice {
    /// The price of `per` units.
    pub amount: Money,
    /// How many units `amount` buys; at least 1.
    pub per: u64,
}

impl UnitPrice {
    /// `amount` per `per` units (`per` of zero is treated as one).
    pub const fn new(amount: Money, per: u64) -> UnitPrice {
        UnitPrice {
            amount,
            per: if per == 0 { 1 } else { per },
        }
    }

    /// A price that charges nothing.
    pub const FREE: UnitPrice = UnitPrice::new(Money::ZERO, 1);

    /// The charge for `units` units: `units × amount / per`, rounded half up to the nano-unit.
    ///
    /// With list prices (at most eight decimals per unit) the division is exact and no rounding
    /// happens; rounding only applies to prices with more precision than a nano-unit per unit.
    pub fn charge(&self, units: u64) -> Result<Money> {
        let per = u128::from(self.per.max(1));
        let product = u128::from(units)
            .checked_mul(self.amount.0)
            .ok_or(Error::Overflow("units × unit price"))?;
        let q = product / per;
        let r = product % per;
        Ok(Money(if r * 2 >= per { q + 1 } else { q }))
    }
}

impl fmt::Display for UnitPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}", self.amount, self.per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exact_decimals() {
        for (text, nanos, shown) in [
            ("1", 1_000_000_000u128, "1.00"),
            ("0.80", 800_000_000, "0.80"),
            ("0.00000008", 80, "0.00000008"),
            ("25.5", 25_500_000_000, "25.50"),
            ("0.000000001", 1, "0.000000001"),
        ] {
            let m = Money::parse(text).unwrap();
            assert_eq!(m.nanos(), nanos);
            assert_eq!(m.to_string(), shown);
            assert_eq!(Money::parse(shown).unwrap(), m);
        }
    }

    #[test]
    fn rejects_signs_exponents_and_excess_precision() {
        for bad in [
            "",
            "-1",
            "1e3",
            "1.",
            ".5",
            "0.0000000001",
            "1,5",
            "NaN",
            " 1",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Money::parse(&"9".repeat(41)).is_err());
        assert!(
            Money::parse(&"9".repeat(40)).is_err(),
            "overflows u128 nanos"
        );
    }

    #[test]
    fn charges_are_exact_for_list_prices() {
        let per_million = UnitPrice::new(Money::parse("1.00").unwrap(), 1_000_000);
        assert_eq!(per_million.charge(1).unwrap().nanos(), 1_000);
        assert_eq!(
            per_million.charge(1_000_000_000).unwrap().to_string(),
            "1000.00"
        );
        let minutes = UnitPrice::new(Money::parse("0.08").unwrap(), 1_000_000);
        assert_eq!(minutes.charge(1).unwrap().nanos(), 80);
    }

    #[test]
    fn charge_rounds_half_up_below_a_nano() {
        let odd = UnitPrice::new(Money::from_nanos(1), 3);
        assert_eq!(odd.charge(1).unwrap().nanos(), 0); // 0.33 -> 0
        assert_eq!(odd.charge(2).unwrap().nanos(), 1); // 0.67 -> 1
        let half = UnitPrice::new(Money::from_nanos(1), 2);
        assert_eq!(half.charge(1).unwrap().nanos(), 1); // 0.5 -> 1
    }

    #[test]
    fn money_serializes_as_a_string() {
        let json = serde_json::to_string(&Money::parse("0.7").unwrap()).unwrap();
        assert_eq!(json, "\"0.70\"");
        assert!(
            serde_json::from_str::<Money>("0.7").is_err(),
            "floats are refused"
        );
    }
}
