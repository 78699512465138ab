//! The credit-grant listing of one wallet account (`GET .../wallet/{accountId}/grants`), pure:
//! which grants a filter keeps, in which order, and how each is shown.
//!
//! Rules: grants are listed in creation order (`seq`). A grant is expired once
//! `expires_at <= now`, and then shows `available` 0 whatever the writer has not yet written
//! off. Filters: `purpose` equal; `exclude_expired` drops expired grants; `effective_from` /
//! `effective_to` bound `effective_at` and `expired_from` / `expired_to` bound `expires_at`, all
//! inclusive.

use ledger_writer::posting::{Account, Grant};
use schemas::ledger::{CreditGrantItem, GrantFilter};
use schemas::{Decimal, Timestamp};

/// Whether the grant has reached its `expires_at`.
pub fn is_expired(grant: &Grant, now: Timestamp) -> bool {
    grant.expires_at <= now
}

/// Whether `filter` keeps `grant` at `now`.
pub fn matches(filter: &GrantFilter, grant: &Grant, now: Timestamp) -> bool {
    let within = |at: Timestamp, from: Option<Timestamp>, to: Option<Timestamp>| {
        from.is_none_or(|f| f <= at) && to.is_none_or(|t| at <= t)
    };
    filter.purpose.is_none_or(|p| p == grant.purpose)
        && !(filter.exclude_expired == Some(true) && is_expired(grant, now))
        && within(grant.effective_at, filter.effective_from, filter.effective_to)
        && within(grant.expires_at, filter.expired_from, filter.expired_to)
}

/// How a grant is shown: `available` is what remains, 0 once expired.
pub fn item(grant: &Grant, now: Timestamp) -> CreditGrantItem {
    CreditGrantItem {
        id: grant.id.clone(),
        available: if is_expired(grant, now) { Decimal::ZERO } else { grant.remaining },
        effective_at: grant.effective_at,
        expires_at: grant.expires_at,
        purpose: grant.purpose,
        created_at: grant.created_at,
    }
}

/// The account's grants that `filter` keeps, in creation order (none without an account).
pub fn list(account: Option<&Account>, filter: &GrantFilter, now: Timestamp) -> Vec<CreditGrantItem> {
    let mut grants: Vec<&Grant> =
        account.map(|a| a.grants.iter().filter(|g| matches(filter, g, now)).collect()).unwrap_or_default();
    grants.sort_by_key(|g| g.seq);
    grants.into_iter().map(|g| item(g, now)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::ledger::Purpose;

    fn t(day: u32) -> Timestamp {
        format!("2026-01-{day:02}T00:00:00Z").parse().unwrap()
    }

    fn grant(id: &str, seq: u64, purpose: Purpose, effective: u32, expires: u32) -> Grant {
        Grant {
            id: id.into(),
            purpose,
            amount: Decimal::TEN,
            remaining: Decimal::from(4),
            effective_at: t(effective),
            expires_at: t(expires),
            priority: purpose.default_priority(),
            revenue_basis: Decimal::ONE,
            source: id.into(),
            seq,
            created_at: t(effective),
        }
    }

    fn account() -> Account {
        Account::from_parts(
            vec![
                grant("late", 2, Purpose::Paid, 3, 30),
                grant("promo", 0, Purpose::Promotion, 1, 10),
                grant("other", 1, Purpose::Other, 2, 20),
            ],
            Decimal::ZERO,
        )
    }

    fn ids(filter: &GrantFilter, now: Timestamp) -> Vec<String> {
        list(Some(&account()), filter, now).into_iter().map(|g| g.id).collect()
    }

    #[test]
    fn grants_are_listed_in_creation_order() {
        assert_eq!(ids(&GrantFilter::default(), t(5)), ["promo", "other", "late"]);
        assert!(list(None, &GrantFilter::default(), t(5)).is_empty());
    }

    #[test]
    fn an_expired_grant_shows_nothing_available_and_can_be_excluded() {
        let items = list(Some(&account()), &GrantFilter::default(), t(10));
        assert_eq!(items[0].available, Decimal::ZERO, "expires_at <= now is expired");
        assert_eq!(items[1].available, Decimal::from(4));
        let filter = GrantFilter { exclude_expired: Some(true), ..GrantFilter::default() };
        assert_eq!(ids(&filter, t(10)), ["other", "late"]);
        assert_eq!(ids(&filter, t(9)), ["promo", "other", "late"]);
        let keep = GrantFilter { exclude_expired: Some(false), ..GrantFilter::default() };
        assert_eq!(ids(&keep, t(25)).len(), 3);
    }

    #[test]
    fn grant_filters_match_purpose_and_inclusive_date_bounds() {
        let purpose = GrantFilter { purpose: Some(Purpose::Promotion), ..GrantFilter::default() };
        assert_eq!(ids(&purpose, t(5)), ["promo"]);
        let effective =
            GrantFilter { effective_from: Some(t(2)), effective_to: Some(t(3)), ..GrantFilter::default() };
        assert_eq!(ids(&effective, t(5)), ["other", "late"]);
        let expiring =
            GrantFilter { expired_from: Some(t(10)), expired_to: Some(t(20)), ..GrantFilter::default() };
        assert_eq!(ids(&expiring, t(5)), ["promo", "other"]);
        let none = GrantFilter { expired_to: Some(t(9)), ..GrantFilter::default() };
        assert!(ids(&none, t(5)).is_empty());
    }

    #[test]
    fn grant_filters_parse_from_the_clients_query_encoding() {
        let query = "purpose=paid&exclude_expired=true&effective_from=2026-01-02T00%3A00%3A00.000Z";
        let uri: axum::http::Uri = format!("/?{query}").parse().unwrap();
        let filter = axum::extract::Query::<GrantFilter>::try_from_uri(&uri).unwrap().0;
        assert_eq!(filter.purpose, Some(Purpose::Paid));
        assert_eq!(filter.exclude_expired, Some(true));
        assert_eq!(filter.effective_from, Some(t(2)));
    }
}
