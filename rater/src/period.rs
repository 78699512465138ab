//! Tier periods: the window a graduated tier's cumulative counter covers.

use chrono::Datelike;
use schemas::catalog::TierCadence;
use schemas::Timestamp;
use std::fmt;

/// One period of a counter, in UTC calendar terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeriodKey {
    Lifetime,
    Month { year: i32, month: u32 },
    Quarter { year: i32, quarter: u32 },
    Year { year: i32 },
}

impl PeriodKey {
    /// The period of `cadence` containing `at` (no cadence: lifetime).
    pub fn of(cadence: Option<TierCadence>, at: Timestamp) -> Self {
        let year = at.year();
        match cadence {
            None | Some(TierCadence::Lifetime) | Some(TierCadence::Custom) => PeriodKey::Lifetime,
            Some(TierCadence::Monthly) => PeriodKey::Month { year, month: at.month() },
            Some(TierCadence::Quarterly) => PeriodKey::Quarter { year, quarter: at.month0() / 3 + 1 },
            Some(TierCadence::Yearly) => PeriodKey::Year { year },
        }
    }
}

impl fmt::Display for PeriodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeriodKey::Lifetime => f.write_str("lifetime"),
            PeriodKey::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            PeriodKey::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
            PeriodKey::Year { year } => write!(f, "{year:04}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tier_periods_are_utc_calendar_windows() {
        let t = at("2026-11-30T23:59:59Z");
        assert_eq!(PeriodKey::of(None, t).to_string(), "lifetime");
        assert_eq!(PeriodKey::of(Some(TierCadence::Monthly), t).to_string(), "2026-11");
        assert_eq!(PeriodKey::of(Some(TierCadence::Quarterly), t).to_string(), "2026-Q4");
        assert_eq!(PeriodKey::of(Some(TierCadence::Yearly), t).to_string(), "2026");
        assert_eq!(
            PeriodKey::of(Some(TierCadence::Quarterly), at("2026-01-01T00:00:00Z")).to_string(),
            "2026-Q1"
        );
        // A UTC+2 timestamp on Dec 1st local is still November in UTC.
        assert_eq!(
            PeriodKey::of(Some(TierCadence::Monthly), at("2026-12-01T01:00:00+02:00")).to_string(),
            "2026-11"
        );
    }
}
