//! Exact money. Every amount, rate and quantity is a [`Decimal`]; JSON numbers are read and
//! written through serde_json's arbitrary-precision mode, so `0.1` read is `0.1` written.

pub use rust_decimal::Decimal;
use rust_decimal::RoundingStrategy;

/// The one bound on every number a request can carry (amounts, rates, quantities, prices, tier
/// limits, costs, exchange rates and their inverses): its magnitude is at most 10^9. With it, no
/// product of two request numbers (a fee: quantity x price; revenue: amount x basis) comes near the
/// decimal range (about 7.9 x 10^28). Why 10^9: `docs/decisions.md`, "Bounded money".
pub const REQUEST_BOUND: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// The most one wallet account may hold, in credit (the sum of its grants' remaining amounts)
/// and in debt: 10^15. The ledger writer refuses a credit or a debit that would go beyond it, so
/// every balance read (credit - debt) stays within +-10^15, and revenue recognised from it (at a
/// basis of at most [`REQUEST_BOUND`]) within 10^24.
pub const ACCOUNT_BOUND: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// Whether `value` is within [`REQUEST_BOUND`] in magnitude.
pub fn within_request_bound(value: Decimal) -> bool {
    value.abs() <= REQUEST_BOUND
}

/// Fractional digits kept by a division (package pricing, exchange-rate inversion).
pub const DIVISION_SCALE: u32 = 12;

/// Divides exactly where possible and otherwise rounds half-even to [`DIVISION_SCALE`] digits,
/// then drops trailing zeros. `None` when `divisor` is zero or the result overflows.
pub fn divide(dividend: Decimal, divisor: Decimal) -> Option<Decimal> {
    if divisor.is_zero() {
        return None;
    }
    dividend
        .checked_div(divisor)
        .map(|q| q.round_dp_with_strategy(DIVISION_SCALE, RoundingStrategy::MidpointNearestEven).normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_bounds_are_ten_to_the_ninth_and_fifteenth() {
        assert_eq!(REQUEST_BOUND, d("1000000000"));
        assert_eq!(ACCOUNT_BOUND, d("1000000000000000"));
        assert!(within_request_bound(d("-1000000000")) && !within_request_bound(d("1000000000.000001")));
        // The largest products the bounds allow stay far inside the decimal range.
        assert!(REQUEST_BOUND.checked_mul(REQUEST_BOUND).is_some());
        assert!(ACCOUNT_BOUND.checked_mul(REQUEST_BOUND).and_then(|r| r.checked_mul(d("10000"))).is_some());
    }

    #[test]
    fn money_addition_is_exact() {
        assert_eq!(d("0.1") + d("0.2"), d("0.3"));
    }

    #[test]
    fn money_division_rounds_half_even_to_12_digits() {
        assert_eq!(divide(d("1"), d("3")), Some(d("0.333333333333")));
        assert_eq!(divide(d("2"), d("3")), Some(d("0.666666666667")));
        assert_eq!(divide(d("1"), d("0.10")), Some(d("10")));
        assert_eq!(divide(d("1"), d("0")), None);
    }

    #[test]
    fn money_json_numbers_round_trip_exactly() {
        for text in ["0.1", "0.00294125", "1234567890.123456789", "10", "-3.50"] {
            let value: Decimal = serde_json::from_str(text).unwrap();
            assert_eq!(value, d(text));
            assert_eq!(serde_json::to_string(&value).unwrap(), text);
        }
    }

    #[test]
    fn money_json_accepts_exponent_notation_from_float_encoders() {
        // Python's json module writes small floats as `1e-06`.
        let value: Decimal = serde_json::from_str("1e-06").unwrap();
        assert_eq!(value, d("0.000001"));
    }
}
