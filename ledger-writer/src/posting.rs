//! The posting core (`semantics.md` §2, §4). An [`Account`] holds its credit grants and its debt;
//! every mutation returns the posting lines that explain it, so a transaction always carries
//! where each slice of its amount went.
//!
//! Invariants (checked by the tests below, and by a proptest over random operation sequences):
//! - every debit's lines sum to its amount;
//! - `remaining` never goes below zero and debt never below zero;
//! - conservation: `sum(grant amounts) = sum(remaining) + sum(debited from grants)
//!   + sum(repaid debt) + sum(written off) + sum(rolled over)`;
//! - `available = sum(remaining of eligible grants) - debt`;
//! - bounded (`semantics.md` §1): the sum of remaining and the debt each stay within
//!   [`ACCOUNT_BOUND`] (10^15): a credit or debit that would go beyond is refused
//!   ([`PostingError::Bound`]) before anything changes, so every read of an account
//!   (`available`, totals) is checked arithmetic that cannot fail.

use schemas::money::ACCOUNT_BOUND;
use schemas::{Decimal, Timestamp};
use serde::{Deserialize, Serialize};

pub use schemas::ledger::Purpose;

/// A credit grant: credit never lands as a bare number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub purpose: Purpose,
    pub amount: Decimal,
    pub remaining: Decimal,
    pub effective_at: Timestamp,
    pub expires_at: Timestamp,
    pub priority: i32,
    /// Revenue recognised per unit consumed (fiat: 1; promotion: 0; ...).
    pub revenue_basis: Decimal,
    /// The transaction that created the grant.
    pub source: String,
    /// Creation order within the account: the last tie-breaker of the consumption order.
    pub seq: u64,
    /// When the grant was posted.
    pub created_at: Timestamp,
}

impl Grant {
    /// Eligible at `now`: effective, not expired, something left.
    pub fn is_eligible(&self, now: Timestamp) -> bool {
        self.effective_at <= now && now < self.expires_at && self.remaining > Decimal::ZERO
    }
}

/// A grant as requested, before the account numbers it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewGrant {
    pub id: String,
    pub purpose: Purpose,
    pub amount: Decimal,
    pub effective_at: Timestamp,
    pub expires_at: Timestamp,
    /// `None`: the purpose's default priority.
    pub priority: Option<i32>,
    pub revenue_basis: Decimal,
    pub source: String,
}

/// Where one slice of a mutation went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Debited from a grant.
    FromGrant { grant: String, amount: Decimal },
    /// Not covered by any grant: added to the account's debt.
    ToDebt { amount: Decimal },
    /// Debt repaid out of a grant.
    RepaidDebt { grant: String, amount: Decimal },
    /// A grant's remainder written off at expiry.
    Expired { grant: String, amount: Decimal },
    /// A grant's remainder carried into its successor by a `rollover` entitlement: the grant is
    /// closed without an expiry (and without breakage revenue).
    RolledOver { grant: String, amount: Decimal },
}

impl Line {
    pub fn amount(&self) -> Decimal {
        match self {
            Line::FromGrant { amount, .. }
            | Line::ToDebt { amount }
            | Line::RepaidDebt { amount, .. }
            | Line::Expired { amount, .. }
            | Line::RolledOver { amount, .. } => *amount,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PostingError {
    #[error("amount must not be negative")]
    NegativeAmount,
    #[error("grant `{0}` expires before it becomes effective")]
    EmptyValidity(String),
    #[error("grant `{0}` already exists on this account")]
    DuplicateGrant(String),
    #[error("amount out of range")]
    Overflow,
    /// The account would hold more than [`ACCOUNT_BOUND`] in credit or in debt.
    #[error("the account would hold more than 1000000000000000 in credit or in debt (the ledger bound)")]
    Bound,
}

/// One wallet account: `{name}:{ASSET}` with its grants and debt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub grants: Vec<Grant>,
    pub debt: Decimal,
    #[serde(default)]
    next_seq: u64,
}

impl Account {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds an account from stored state (grants keep their `seq`).
    pub fn from_parts(grants: Vec<Grant>, debt: Decimal) -> Self {
        let next_seq = grants.iter().map(|g| g.seq + 1).max().unwrap_or(0);
        Self { grants, debt, next_seq }
    }

    /// `sum(remaining of eligible grants) - debt`; negative when in debt. `None` only if the
    /// account broke the bound (it cannot: credits and debits beyond it are refused).
    pub fn available(&self, now: Timestamp) -> Option<Decimal> {
        self.eligible_credit(now)?.checked_sub(self.debt)
    }

    /// The sum of the eligible grants' remaining amounts.
    fn eligible_credit(&self, now: Timestamp) -> Option<Decimal> {
        sum(self.grants.iter().filter(|g| g.is_eligible(now)).map(|g| g.remaining))
    }

    /// Whether the account may take `amount` more credit: every grant's remaining, eligible
    /// or not yet, counts against [`ACCOUNT_BOUND`].
    pub fn credit_fits(&self, amount: Decimal) -> bool {
        sum(self.grants.iter().map(|g| g.remaining).chain([amount])).is_some_and(|held| held <= ACCOUNT_BOUND)
    }

    /// Whether a debit of `amount` at `now` keeps the debt within [`ACCOUNT_BOUND`].
    pub fn debit_fits(&self, amount: Decimal, now: Timestamp) -> bool {
        let Some(credit) = self.eligible_credit(now) else { return false };
        let uncovered = amount.checked_sub(credit).unwrap_or(Decimal::ZERO).max(Decimal::ZERO);
        self.debt.checked_add(uncovered).is_some_and(|debt| debt <= ACCOUNT_BOUND)
    }

    /// Indexes of eligible grants in consumption order: priority, then `expires_at`, then
    /// `effective_at`, then creation order.
    fn consumption_order(&self, now: Timestamp) -> Vec<usize> {
        let mut order: Vec<usize> =
            (0..self.grants.len()).filter(|&i| self.grants[i].is_eligible(now)).collect();
        order.sort_by_key(|&i| {
            let g = &self.grants[i];
            (g.priority, g.expires_at, g.effective_at, g.seq)
        });
        order
    }

    /// Takes up to `amount` from eligible grants in consumption order; returns the slices and
    /// what is left uncovered.
    fn take(&mut self, amount: Decimal, now: Timestamp) -> (Vec<(String, Decimal)>, Decimal) {
        let mut left = amount;
        let mut slices = Vec::new();
        for i in self.consumption_order(now) {
            if left.is_zero() {
                break;
            }
            let grant = &mut self.grants[i];
            let slice = left.min(grant.remaining);
            grant.remaining -= slice;
            left -= slice;
            slices.push((grant.id.clone(), slice));
        }
        (slices, left)
    }

    /// A debit (fee, charge, negative adjustment): split across grants in consumption order;
    /// what no grant covers becomes debt (overdraft is allowed, usage is never lost).
    pub fn debit(&mut self, amount: Decimal, now: Timestamp) -> Result<Vec<Line>, PostingError> {
        if amount < Decimal::ZERO {
            return Err(PostingError::NegativeAmount);
        }
        if !self.debit_fits(amount, now) {
            return Err(PostingError::Bound);
        }
        let (slices, uncovered) = self.take(amount, now);
        let mut lines: Vec<Line> =
            slices.into_iter().map(|(grant, amount)| Line::FromGrant { grant, amount }).collect();
        if uncovered > Decimal::ZERO {
            self.debt = self.debt.checked_add(uncovered).ok_or(PostingError::Overflow)?;
            lines.push(Line::ToDebt { amount: uncovered });
        }
        Ok(lines)
    }

    /// Lands a grant. If the account is in debt, the debt is repaid first (from eligible grants in
    /// consumption order, which includes the new one once it is effective); the lines say how.
    pub fn credit(&mut self, grant: NewGrant, now: Timestamp) -> Result<Vec<Line>, PostingError> {
        if grant.amount < Decimal::ZERO {
            return Err(PostingError::NegativeAmount);
        }
        if grant.expires_at <= grant.effective_at {
            return Err(PostingError::EmptyValidity(grant.id));
        }
        if self.grants.iter().any(|g| g.id == grant.id) {
            return Err(PostingError::DuplicateGrant(grant.id));
        }
        if !self.credit_fits(grant.amount) {
            return Err(PostingError::Bound);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.grants.push(Grant {
            priority: grant.priority.unwrap_or_else(|| grant.purpose.default_priority()),
            remaining: grant.amount,
            id: grant.id,
            purpose: grant.purpose,
            amount: grant.amount,
            effective_at: grant.effective_at,
            expires_at: grant.expires_at,
            revenue_basis: grant.revenue_basis,
            source: grant.source,
            seq,
            created_at: now,
        });
        Ok(self.settle_debt(now))
    }

    /// Repays debt from eligible grants (consumption order). Called when a grant lands and by
    /// the writer's time sweep, so a grant that becomes effective later repays debt then.
    pub fn settle_debt(&mut self, now: Timestamp) -> Vec<Line> {
        if self.debt.is_zero() {
            return Vec::new();
        }
        let (slices, unpaid) = self.take(self.debt, now);
        self.debt = unpaid;
        slices.into_iter().map(|(grant, amount)| Line::RepaidDebt { grant, amount }).collect()
    }

    /// Writes off the remainder of every grant whose `expires_at` has passed.
    pub fn expire(&mut self, now: Timestamp) -> Vec<(Purpose, Line)> {
        let mut written_off = Vec::new();
        for grant in self.grants.iter_mut().filter(|g| g.expires_at <= now && g.remaining > Decimal::ZERO) {
            written_off
                .push((grant.purpose, Line::Expired { grant: grant.id.clone(), amount: grant.remaining }));
            grant.remaining = Decimal::ZERO;
        }
        written_off
    }

    /// Closes grant `id` for a rollover: its remainder leaves it (to be carried into the next
    /// period's grant) and is not written off. `None` if the account has no such grant.
    pub fn roll_over(&mut self, id: &str) -> Option<Line> {
        let grant = self.grants.iter_mut().find(|g| g.id == id)?;
        let amount = std::mem::take(&mut grant.remaining);
        Some(Line::RolledOver { grant: grant.id.clone(), amount })
    }

    /// The next moment a time-driven change (an expiry) is due.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.grants.iter().filter(|g| g.remaining > Decimal::ZERO).map(|g| g.expires_at).min()
    }
}

/// Checked sum: `None` if it leaves the decimal range.
fn sum(amounts: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    amounts.into_iter().try_fold(Decimal::ZERO, Decimal::checked_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn t(day: u32) -> Timestamp {
        format!("2026-01-{day:02}T00:00:00Z").parse().unwrap()
    }

    fn grant(id: &str, purpose: Purpose, amount: &str, effective: u32, expires: u32) -> NewGrant {
        NewGrant {
            id: id.into(),
            purpose,
            amount: d(amount),
            effective_at: t(effective),
            expires_at: t(expires),
            priority: None,
            revenue_basis: Decimal::ONE,
            source: format!("txn_{id}"),
        }
    }

    fn from(grant: &str, amount: &str) -> Line {
        Line::FromGrant { grant: grant.into(), amount: d(amount) }
    }

    #[test]
    fn consumption_order_is_priority_then_expiry_then_effective_then_creation() {
        let mut a = Account::new();
        a.credit(grant("paid_late", Purpose::Paid, "5", 1, 30), t(2)).unwrap();
        a.credit(grant("paid_soon", Purpose::Paid, "5", 1, 20), t(2)).unwrap();
        a.credit(grant("promo", Purpose::Promotion, "5", 1, 31), t(2)).unwrap();
        a.credit(grant("bundled", Purpose::Bundled, "5", 1, 31), t(2)).unwrap();
        a.credit(grant("paid_soon_older_effective", Purpose::Paid, "5", 1, 20), t(2)).unwrap();
        let mut same = grant("paid_soon_earlier", Purpose::Paid, "5", 1, 20);
        same.effective_at = "2025-12-31T00:00:00Z".parse().unwrap();
        a.credit(same, t(2)).unwrap();
        let lines = a.debit(d("30"), t(3)).unwrap();
        let order: Vec<_> = lines
            .iter()
            .map(|l| match l {
                Line::FromGrant { grant, .. } => grant.as_str(),
                _ => "debt",
            })
            .collect();
        assert_eq!(
            order,
            ["promo", "bundled", "paid_soon_earlier", "paid_soon", "paid_soon_older_effective", "paid_late"]
        );
    }

    #[test]
    fn an_entitlement_priority_overrides_the_purpose_default() {
        let mut a = Account::new();
        a.credit(grant("promo", Purpose::Promotion, "5", 1, 30), t(1)).unwrap();
        let mut first = grant("bundled_first", Purpose::Bundled, "5", 1, 30);
        first.priority = Some(1);
        a.credit(first, t(1)).unwrap();
        assert_eq!(a.debit(d("1"), t(2)).unwrap(), [from("bundled_first", "1")]);
    }

    #[test]
    fn a_debit_splits_across_grants_and_its_lines_sum_to_its_amount() {
        let mut a = Account::new();
        a.credit(grant("g1", Purpose::Promotion, "3", 1, 30), t(1)).unwrap();
        a.credit(grant("g2", Purpose::Paid, "10", 1, 30), t(1)).unwrap();
        let lines = a.debit(d("4.5"), t(2)).unwrap();
        assert_eq!(lines, [from("g1", "3"), from("g2", "1.5")]);
        assert_eq!(lines.iter().map(Line::amount).sum::<Decimal>(), d("4.5"));
        assert_eq!(a.available(t(2)).unwrap(), d("8.5"));
    }

    #[test]
    fn an_overdraft_becomes_debt_and_available_goes_negative() {
        let mut a = Account::new();
        a.credit(grant("g1", Purpose::Paid, "2", 1, 30), t(1)).unwrap();
        assert_eq!(a.debit(d("5"), t(2)).unwrap(), [from("g1", "2"), Line::ToDebt { amount: d("3") }]);
        assert_eq!((a.debt, a.available(t(2)).unwrap()), (d("3"), d("-3")));
        assert_eq!(a.debit(d("1"), t(2)).unwrap(), [Line::ToDebt { amount: d("1") }]);
        assert_eq!(a.available(t(2)).unwrap(), d("-4"));
    }

    #[test]
    fn a_new_grant_repays_debt_first() {
        let mut a = Account::new();
        a.debit(d("4"), t(1)).unwrap();
        let lines = a.credit(grant("g1", Purpose::Paid, "10", 1, 30), t(2)).unwrap();
        assert_eq!(lines, [Line::RepaidDebt { grant: "g1".into(), amount: d("4") }]);
        assert_eq!((a.debt, a.available(t(2)).unwrap(), a.grants[0].remaining), (d("0"), d("6"), d("6")));
        // A grant smaller than the debt repays what it can.
        a.debit(d("9"), t(2)).unwrap();
        let lines = a.credit(grant("g2", Purpose::Paid, "1", 1, 30), t(2)).unwrap();
        assert_eq!(lines, [Line::RepaidDebt { grant: "g2".into(), amount: d("1") }]);
        assert_eq!(a.available(t(2)).unwrap(), d("-2"));
    }

    #[test]
    fn future_grants_are_not_eligible_until_effective_then_repay_debt() {
        let mut a = Account::new();
        a.debit(d("2"), t(1)).unwrap();
        let lines = a.credit(grant("later", Purpose::Paid, "5", 10, 30), t(1)).unwrap();
        assert!(lines.is_empty());
        assert_eq!(a.available(t(1)).unwrap(), d("-2"));
        assert_eq!(a.debit(d("1"), t(5)).unwrap(), [Line::ToDebt { amount: d("1") }]);
        assert_eq!(a.settle_debt(t(10)), [Line::RepaidDebt { grant: "later".into(), amount: d("3") }]);
        assert_eq!(a.available(t(10)).unwrap(), d("2"));
    }

    #[test]
    fn expired_grants_are_not_consumed_and_are_written_off() {
        let mut a = Account::new();
        a.credit(grant("promo", Purpose::Promotion, "5", 1, 10), t(1)).unwrap();
        a.credit(grant("paid", Purpose::Paid, "5", 1, 20), t(1)).unwrap();
        assert_eq!(a.next_expiry(), Some(t(10)));
        // At expires_at the grant is no longer eligible.
        assert_eq!(a.debit(d("1"), t(10)).unwrap(), [from("paid", "1")]);
        let expired = a.expire(t(10));
        assert_eq!(expired, [(Purpose::Promotion, Line::Expired { grant: "promo".into(), amount: d("5") })]);
        assert!(a.expire(t(10)).is_empty(), "an expiry is written off once");
        assert_eq!(a.next_expiry(), Some(t(20)));
        assert_eq!(a.available(t(10)).unwrap(), d("4"));
    }

    #[test]
    fn malformed_postings_are_refused() {
        let mut a = Account::new();
        assert_eq!(a.debit(d("-1"), t(1)), Err(PostingError::NegativeAmount));
        assert!(matches!(
            a.credit(grant("g", Purpose::Paid, "1", 5, 5), t(1)),
            Err(PostingError::EmptyValidity(_))
        ));
        a.credit(grant("g", Purpose::Paid, "1", 1, 5), t(1)).unwrap();
        assert!(matches!(
            a.credit(grant("g", Purpose::Paid, "1", 1, 5), t(1)),
            Err(PostingError::DuplicateGrant(_))
        ));
    }

    #[test]
    fn restored_accounts_keep_creation_order() {
        let mut a = Account::new();
        a.credit(grant("g1", Purpose::Paid, "1", 1, 30), t(1)).unwrap();
        a.credit(grant("g2", Purpose::Paid, "1", 1, 30), t(1)).unwrap();
        let mut b = Account::from_parts(a.grants.clone(), a.debt);
        b.credit(grant("g3", Purpose::Paid, "1", 1, 30), t(1)).unwrap();
        assert_eq!(b.grants[2].seq, 2);
        assert_eq!(b.debit(d("3"), t(2)).unwrap(), [from("g1", "1"), from("g2", "1"), from("g3", "1")]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Step {
            Credit { amount: i64, purpose: u8, effective: u32, life: u32 },
            Debit { amount: i64 },
            Expire,
            RollOver { grant: usize },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0i64..10_000, 0u8..4, 1u32..20, 1u32..15).prop_map(|(amount, purpose, effective, life)| {
                    Step::Credit { amount, purpose, effective, life }
                }),
                (0i64..10_000).prop_map(|amount| Step::Debit { amount }),
                Just(Step::Expire),
                (0usize..60).prop_map(|grant| Step::RollOver { grant }),
            ]
        }

        /// An amount anywhere in the decimal range, the bound's edges most often.
        fn extreme() -> impl Strategy<Value = Decimal> {
            prop_oneof![
                Just(ACCOUNT_BOUND),
                Just(Decimal::MAX),
                Just(schemas::money::REQUEST_BOUND),
                Just(Decimal::new(1, 28)),
                (0u64..u64::MAX).prop_map(|n| Decimal::from(n) * Decimal::from(4_000_000_000u64)),
                (0u64..u64::MAX).prop_map(Decimal::from),
            ]
        }

        proptest! {
            /// Whatever credits and debits are asked, of any size: nothing panics, a refusal
            /// changes nothing, and credit and debt stay within the bound, so `available` is
            /// always readable.
            #[test]
            fn the_account_bound_holds_for_any_sequence_of_extreme_amounts(
                steps in prop::collection::vec((any::<bool>(), extreme()), 1..40)
            ) {
                let mut a = Account::new();
                for (i, (is_credit, amount)) in steps.into_iter().enumerate() {
                    let before = a.clone();
                    let result = if is_credit {
                        a.credit(grant(&format!("g{i}"), Purpose::Paid, &amount.to_string(), 1, 28), t(2)).map(drop)
                    } else {
                        a.debit(amount, t(2)).map(drop)
                    };
                    if result.is_err() {
                        prop_assert_eq!(&a, &before, "a refused posting changes nothing");
                    }
                    let held = sum(a.grants.iter().map(|g| g.remaining));
                    prop_assert!(held.is_some_and(|h| h <= ACCOUNT_BOUND));
                    prop_assert!(a.debt <= ACCOUNT_BOUND);
                    prop_assert!(a.available(t(2)).is_some());
                }
            }

            #[test]
            fn conservation_and_available_hold_for_any_sequence(steps in prop::collection::vec(step(), 1..60)) {
                let mut a = Account::new();
                let (mut from_grants, mut repaid, mut written_off, mut to_debt, mut rolled) =
                    (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
                for (i, s) in steps.into_iter().enumerate() {
                    // Time moves forward one day per step, within January.
                    let now = t(1 + (i as u32 % 28));
                    let lines = match s {
                        Step::Credit { amount, purpose, effective, life } => {
                            let purpose = [Purpose::Paid, Purpose::Promotion, Purpose::Bundled, Purpose::Other][purpose as usize];
                            let effective = effective.min(27);
                            let g = grant(&format!("g{i}"), purpose, &Decimal::new(amount, 2).to_string(), effective, (effective + life).min(28));
                            a.credit(g, now).unwrap()
                        }
                        Step::Debit { amount } => {
                            let amount = Decimal::new(amount, 2);
                            let lines = a.debit(amount, now).unwrap();
                            prop_assert_eq!(lines.iter().map(Line::amount).sum::<Decimal>(), amount);
                            lines
                        }
                        Step::Expire => a.expire(now).into_iter().map(|(_, l)| l).collect(),
                        Step::RollOver { grant } => a.roll_over(&format!("g{grant}")).into_iter().collect(),
                    };
                    for line in lines {
                        match line {
                            Line::FromGrant { amount, .. } => from_grants += amount,
                            Line::RepaidDebt { amount, .. } => repaid += amount,
                            Line::Expired { amount, .. } => written_off += amount,
                            Line::ToDebt { amount } => to_debt += amount,
                            Line::RolledOver { amount, .. } => rolled += amount,
                        }
                    }
                    prop_assert!(a.grants.iter().all(|g| g.remaining >= Decimal::ZERO && g.remaining <= g.amount));
                    prop_assert!(a.debt >= Decimal::ZERO);
                    let granted: Decimal = a.grants.iter().map(|g| g.amount).sum();
                    let remaining: Decimal = a.grants.iter().map(|g| g.remaining).sum();
                    prop_assert_eq!(granted, remaining + from_grants + repaid + written_off + rolled);
                    prop_assert_eq!(a.debt, to_debt - repaid);
                    let eligible: Decimal = a.grants.iter().filter(|g| g.is_eligible(now)).map(|g| g.remaining).sum();
                    prop_assert_eq!(a.available(now), Some(eligible - a.debt));
                }
            }
        }
    }
}
