//! AWS IoT SQL's Decimal: 34 significant digits (Java's `MathContext.DECIMAL128`: round half
//! even), exact from text, arithmetic through `bigdecimal`.

use std::cmp::Ordering;
use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use bigdecimal::{BigDecimal, RoundingMode, ToPrimitive, Zero};

/// Significant digits kept by every Decimal result.
pub const PRECISION: u64 = 34;

/// A decimal number with at most [`PRECISION`] significant digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal(BigDecimal);

impl Decimal {
    fn round(value: BigDecimal) -> Decimal {
        // Only round what is longer: `with_precision_round` also pads shorter values with
        // trailing zeros (22.5 would print as 22.50000000000000000000000000000000).
        if value.digits() <= PRECISION {
            return Decimal(value);
        }
        let precision = NonZeroU64::new(PRECISION).expect("PRECISION is not zero");
        Decimal(value.with_precision_round(precision, RoundingMode::HalfEven))
    }

    /// Parses a JSON or SQL number (`-1.5`, `5E-12`, `10`), rounded to 34 digits; `None` if the
    /// text is not a number or its exponent is absurd (beyond ±10,000).
    pub fn parse(text: &str) -> Option<Decimal> {
        let value = BigDecimal::from_str(text).ok()?;
        let (_, scale) = value.as_bigint_and_exponent();
        if !(-10_000..=10_000).contains(&scale) {
            return None;
        }
        Some(Decimal::round(value))
    }

    /// The integer `value`.
    pub fn from_i128(value: i128) -> Decimal {
        Decimal::round(BigDecimal::from(value))
    }

    /// A double's value, through its shortest round-trip text (`0.1` is `0.1`); `None` for NaN
    /// and infinities.
    pub fn from_f64(value: f64) -> Option<Decimal> {
        if !value.is_finite() {
            return None;
        }
        Decimal::parse(&format!("{value:?}"))
    }

    /// The nearest double.
    pub fn to_f64(&self) -> f64 {
        self.0.to_f64().unwrap_or(f64::NAN)
    }

    /// Whether it has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.0.is_integer()
    }

    /// The integer part (truncated toward zero), if it fits an `i128`.
    pub fn trunc_to_i128(&self) -> Option<i128> {
        self.0.with_scale_round(0, RoundingMode::Down).to_i128()
    }

    /// Rounded to `scale` fractional digits with `mode` (`floor`, `ceil`, `round`, `trunc`).
    pub fn with_scale_round(&self, scale: i64, mode: RoundingMode) -> Decimal {
        Decimal::round(self.0.with_scale_round(scale, mode))
    }

    /// `self + rhs`, rounded to 34 digits.
    pub fn add(&self, rhs: &Decimal) -> Decimal {
        Decimal::round(&self.0 + &rhs.0)
    }

    /// `self - rhs`, rounded to 34 digits.
    pub fn sub(&self, rhs: &Decimal) -> Decimal {
        Decimal::round(&self.0 - &rhs.0)
    }

    /// `self * rhs`, rounded to 34 digits.
    pub fn mul(&self, rhs: &Decimal) -> Decimal {
        Decimal::round(&self.0 * &rhs.0)
    }

    /// `self / rhs`, rounded to 34 digits; `None` when `rhs` is zero.
    pub fn div(&self, rhs: &Decimal) -> Option<Decimal> {
        if rhs.0.sign() == bigdecimal::num_bigint::Sign::NoSign {
            return None;
        }
        Some(Decimal::round(&self.0 / &rhs.0))
    }

    /// The remainder of truncated division (sign of `self`), as Java's `BigDecimal.remainder`;
    /// `None` when `rhs` is zero.
    pub fn rem(&self, rhs: &Decimal) -> Option<Decimal> {
        if rhs.0.sign() == bigdecimal::num_bigint::Sign::NoSign {
            return None;
        }
        Some(Decimal::round(&self.0 % &rhs.0))
    }

    /// `-self`.
    pub fn neg(&self) -> Decimal {
        Decimal(-self.0.clone())
    }

    /// Numeric comparison (`1.0` equals `1`).
    pub fn compare(&self, rhs: &Decimal) -> Ordering {
        self.0.cmp(&rhs.0)
    }

    /// Numeric comparison with the integer `rhs`, exact. When the coefficient and `rhs` scaled
    /// to the same exponent fit an `i128` (every payload number of up to 34 digits against a
    /// literal like `25`) it is compared without allocating; otherwise through bigdecimal.
    pub fn compare_int(&self, rhs: i128) -> Ordering {
        match self.compare_int_small(rhs) {
            Some(ordering) => ordering,
            None => self.compare(&Decimal::from_i128(rhs)),
        }
    }

    /// `coefficient × 10^-scale` against `rhs` in `i128` arithmetic; `None` when a side
    /// does not fit (then the caller compares as bignums).
    fn compare_int_small(&self, rhs: i128) -> Option<Ordering> {
        // An integer beyond 34 digits is rounded by `from_i128` first: leave it to that path.
        if rhs.unsigned_abs() >= 10u128.pow(PRECISION as u32) {
            return None;
        }
        let (coefficient, scale) = self.0.as_bigint_and_scale();
        let coefficient = coefficient.to_i128()?;
        let power = |exponent: i64| 10i128.checked_pow(u32::try_from(exponent).ok()?);
        if scale >= 0 {
            // coefficient / 10^scale <=> rhs  ⇔  coefficient <=> rhs × 10^scale
            Some(coefficient.cmp(&rhs.checked_mul(power(scale)?)?))
        } else {
            // coefficient × 10^-scale <=> rhs
            Some(
                coefficient
                    .checked_mul(power(scale.checked_neg()?)?)?
                    .cmp(&rhs),
            )
        }
    }

    /// The underlying `BigDecimal`, for functions that need more than this API.
    pub fn as_big(&self) -> &BigDecimal {
        &self.0
    }

    /// Wraps a `BigDecimal`, rounded to 34 digits.
    pub fn from_big(value: BigDecimal) -> Decimal {
        Decimal::round(value)
    }
}

impl fmt::Display for Decimal {
    /// JSON number text: plain notation, scientific beyond 1E±20 magnitudes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, scale) = self.0.as_bigint_and_scale();
        if scale < 0 && self.0.is_zero() {
            // `0e60`: the plain form would be 61 zeros, which is not JSON.
            return f.write_str("0");
        }
        let magnitude = self.0.order_of_magnitude();
        if (-20..=20).contains(&magnitude) {
            self.0.write_plain_string(f)
        } else {
            self.0.write_scientific_notation(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    /// Regression (fuzz `rules_eval`): zero with a large exponent printed as 61 zeros.
    #[test]
    fn zero_with_an_exponent_prints_as_json() {
        for text in ["0e60", "000000e000060", "-0E+5", "0e0"] {
            assert_eq!(Decimal::parse(text).expect(text).to_string(), "0", "{text}");
        }
        assert_eq!(Decimal::parse("0.000").unwrap().to_string(), "0.000");
        assert_eq!(Decimal::parse("1e5").unwrap().to_string(), "100000");
    }
}
