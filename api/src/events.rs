//! Usage events. `POST /events` hands the request to ingest: admission by body size first (429
//! with `Retry-After` when over capacity), then parsing (400 / 422 like every body), then
//! validation, dedupe and the durable append (204 once durable). The reads list and show posted
//! events (`Table::Events`, key `{event_id}/{customer_id}`) with their fees and stats.
//!
//! Listing rules: newest first (`occurred_at` descending, then `created_at` descending, then
//! event id and customer id ascending); `period_from`/`period_to` are inclusive UTC dates of
//! `occurred_at`; `event_types` is a comma-separated list; every given filter must match.
//! `customer_external_id` names the customer that holds that external id now. An item's
//! `external_id` is its customer's current external id ("" without one); `total_fees` and
//! `fee_currency` are given when the event has fees, all in one currency.

use crate::docs::clamp;
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{parse_json, Params, RawBody};
use crate::stats::{event_stats, sum, within_dates};
use crate::tenancy::{only_visible, Scope};
use axum::http::StatusCode;
use axum::Json;
use schemas::customer::Customer;
use schemas::ledger::{EventFilter, GetEventResponse, ListEventsItem, StoredEvent, UsageRequest};
use schemas::usage::EventFee;
use schemas::wire::{Page, PageRequest};
use schemas::Decimal;
use std::cmp::Ordering;
use std::collections::HashMap;
use store::typed::{get_doc, list_docs};
use store::{Store, Table};

pub async fn send_usage(Scope(state): Scope, RawBody(bytes): RawBody) -> Result<StatusCode, ApiError> {
    let admission = state.ingest.admit(bytes.len())?;
    let request: UsageRequest = parse_json(&bytes).inspect_err(|_| count_unparsed(&bytes))?;
    state.ingest.accept_from(request, admission, state.store.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Counts the events of a request rejected before ingest saw it (ingest counts its own 422s).
fn count_unparsed(bytes: &[u8]) {
    let events = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("events").and_then(|e| e.as_array()).map(Vec::len))
        .unwrap_or(0);
    telemetry::METRICS.events_rejected_total.add(events as u64);
}

/// An [`EventFilter`] ready to test events: the event type list split, the external id resolved.
pub struct EventQuery<'a> {
    filter: &'a EventFilter,
    event_types: Vec<&'a str>,
    /// The customer that holds `customer_external_id`.
    external_owner: Option<&'a str>,
}

impl<'a> EventQuery<'a> {
    pub fn new(filter: &'a EventFilter, external_owner: Option<&'a str>) -> Self {
        let event_types = filter
            .event_types
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        Self { filter, event_types, external_owner }
    }

    pub fn matches(&self, stored: &StoredEvent) -> bool {
        let f = self.filter;
        let event = &stored.event;
        let has_fees = !stored.fees.is_empty();
        f.event_id.as_deref().is_none_or(|id| event.id == id)
            && f.customer_id.as_deref().is_none_or(|id| stored.customer_id == id)
            && (f.customer_external_id.is_none() || self.external_owner == Some(stored.customer_id.as_str()))
            && f.subject.as_deref().is_none_or(|s| event.subject.as_deref() == Some(s))
            && within_dates(event.occurred_at, f.period_from, f.period_to)
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type.as_str()))
            && f.has_fees.is_none_or(|wanted| wanted == has_fees)
    }
}

/// Newest first: `occurred_at` descending, then `created_at` descending, then event id and
/// customer id ascending (a total order, so pages are stable).
pub fn newest_first(a: &StoredEvent, b: &StoredEvent) -> Ordering {
    b.event
        .occurred_at
        .cmp(&a.event.occurred_at)
        .then(b.created_at.cmp(&a.created_at))
        .then_with(|| a.event.id.cmp(&b.event.id))
        .then_with(|| a.customer_id.cmp(&b.customer_id))
}

/// The sum of the fees and their currency, when there are fees and they share one currency.
pub fn fee_total(fees: &[EventFee]) -> Option<(Decimal, String)> {
    let currency = &fees.first()?.fee.currency;
    if fees.iter().any(|f| &f.fee.currency != currency) {
        return None;
    }
    let total = sum(fees.iter().map(|f| f.fee.amount)).ok()?;
    Some((total.normalize(), currency.clone()))
}

/// How a posted event is listed.
pub fn list_item(stored: &StoredEvent, external_id: String) -> ListEventsItem {
    let total = fee_total(&stored.fees);
    let event = &stored.event;
    ListEventsItem {
        id: event.id.clone(),
        customer_id: stored.customer_id.clone(),
        external_id,
        event_type: event.event_type.clone(),
        subject: event.subject.clone(),
        description: event.description.clone(),
        occurred_at: event.occurred_at,
        created_at: stored.created_at,
        total_fees: total.as_ref().map(|(amount, _)| *amount),
        fee_currency: total.map(|(_, currency)| currency),
        has_fees: !stored.fees.is_empty(),
        stats: event_stats(stored).ok(),
    }
}

/// Customers' current external ids, looked up once per customer.
#[derive(Default)]
struct ExternalIds(HashMap<String, Option<String>>);

impl ExternalIds {
    /// The customer's current external id; the one recorded with the event if the customer is
    /// gone; "" when there is none.
    async fn of(&mut self, store: &dyn Store, stored: &StoredEvent) -> Result<String, ApiError> {
        if !self.0.contains_key(&stored.customer_id) {
            let customer = get_doc::<Customer>(store, Table::Customers, &stored.customer_id).await?;
            let external = match customer {
                Some(c) => c.value.external_id,
                None => stored.customer_external_id.clone(),
            };
            self.0.insert(stored.customer_id.clone(), external);
        }
        Ok(self.0.get(&stored.customer_id).cloned().flatten().unwrap_or_default())
    }
}

pub async fn list(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
    Params(filter): Params<EventFilter>,
) -> Result<Json<Page<ListEventsItem>>, ApiError> {
    let store = state.store.as_ref();
    let page = clamp(page);
    let external_owner = match &filter.customer_external_id {
        Some(ext) => store.find_unique(Table::Customers, "external_id", ext).await?,
        None => None,
    };
    let query = EventQuery::new(&filter, external_owner.as_deref());
    // With an event id, only that id's keys need reading.
    let prefix = filter.event_id.as_deref().map(|id| format!("{id}/")).unwrap_or_default();
    let matching: Vec<StoredEvent> = list_docs::<StoredEvent>(store, Table::Events, &prefix)
        .await?
        .into_iter()
        .map(|d| d.value)
        .filter(|e| query.matches(e))
        .collect();
    // Only the events of customers the request's tenant sees.
    let mut events = only_visible(store, matching, |e| e.customer_id.as_str()).await?;
    events.sort_by(newest_first);
    let total_count = events.len();
    let mut external_ids = ExternalIds::default();
    let mut items = Vec::new();
    for stored in events.iter().skip(page.offset).take(page.limit) {
        let external_id = external_ids.of(store, stored).await?;
        items.push(list_item(stored, external_id));
    }
    Ok(Json(Page { items, total_count, limit: page.limit, offset: page.offset }))
}

/// One posted event. Event ids are scoped by customer; if several customers sent the same id,
/// the one accepted first is shown.
pub async fn get(
    Scope(state): Scope,
    Path(event_id): Path<String>,
) -> Result<Json<GetEventResponse>, ApiError> {
    let store = state.store.as_ref();
    let candidates: Vec<StoredEvent> =
        list_docs::<StoredEvent>(store, Table::Events, &format!("{event_id}/"))
            .await?
            .into_iter()
            .map(|d| d.value)
            // The prefix also covers ids that merely start with `{event_id}/`.
            .filter(|e| e.event.id == event_id)
            .collect();
    let stored = only_visible(store, candidates, |e| e.customer_id.as_str())
        .await?
        .into_iter()
        .min_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.customer_id.cmp(&b.customer_id)))
        .ok_or_else(|| ApiError::not_found("event", &event_id))?;
    let stats = event_stats(&stored).ok();
    Ok(Json(GetEventResponse {
        event: stored.event,
        customer_id: stored.customer_id,
        created_at: stored.created_at,
        fees: stored.fees,
        stats,
        warnings: stored.warnings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::catalog::UsageType;
    use schemas::usage::{FeeBreakdown, UsageEvent};
    use schemas::Timestamp;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn fee(amount: &str, currency: &str) -> EventFee {
        EventFee {
            id: format!("fee_{amount}"),
            product_id: "prod_1".into(),
            product_code: "p".into(),
            product_version: 1,
            fee: FeeBreakdown {
                price_id: "price_1".into(),
                price_name: "n".into(),
                currency: currency.into(),
                dimensions: None,
                usage_type: UsageType::Unit,
                volume_field: None,
                input_volume: None,
                unit_price: None,
                volume_rate: None,
                package_size: None,
                description: None,
                amount: Decimal::from_str(amount).unwrap(),
            },
        }
    }

    fn stored(
        id: &str,
        customer: &str,
        event_type: &str,
        occurred_at: &str,
        fees: Vec<EventFee>,
    ) -> StoredEvent {
        StoredEvent {
            customer_id: customer.into(),
            customer_external_id: None,
            event: UsageEvent {
                id: id.into(),
                event_type: event_type.into(),
                occurred_at: at(occurred_at),
                subject: (customer == "cust_a").then(|| "user-1".to_string()),
                description: None,
                data: BTreeMap::new(),
                costs: None,
            },
            created_at: at("2026-03-10T00:00:00Z"),
            fees,
            warnings: Vec::new(),
            revenue: Decimal::ZERO,
        }
    }

    fn events() -> Vec<StoredEvent> {
        vec![
            stored("e1", "cust_a", "chat", "2026-03-01T10:00:00Z", vec![fee("0.05", "USD")]),
            stored("e2", "cust_a", "image", "2026-03-02T23:59:59Z", Vec::new()),
            stored("e3", "cust_b", "chat", "2026-03-03T00:00:00Z", vec![fee("1", "CREDIT")]),
        ]
    }

    fn filter(query: &str) -> EventFilter {
        let uri: axum::http::Uri = format!("/?{query}").parse().unwrap();
        axum::extract::Query::<EventFilter>::try_from_uri(&uri).unwrap().0
    }

    fn ids(query: &str, owner: Option<&str>) -> Vec<String> {
        let filter = filter(query);
        let q = EventQuery::new(&filter, owner);
        events().into_iter().filter(|e| q.matches(e)).map(|e| e.event.id).collect()
    }

    #[test]
    fn event_filters_each_narrow_the_listing() {
        assert_eq!(ids("", None), ["e1", "e2", "e3"]);
        assert_eq!(ids("event_id=e2", None), ["e2"]);
        assert_eq!(ids("customer_id=cust_b", None), ["e3"]);
        assert_eq!(ids("subject=user-1", None), ["e1", "e2"]);
        assert_eq!(ids("has_fees=true", None), ["e1", "e3"]);
        assert_eq!(ids("has_fees=false", None), ["e2"]);
        assert_eq!(ids("customer_id=cust_a&has_fees=true", None), ["e1"]);
    }

    #[test]
    fn event_types_are_a_comma_separated_list() {
        assert_eq!(ids("event_types=image", None), ["e2"]);
        assert_eq!(ids("event_types=image%2C%20chat", None), ["e1", "e2", "e3"]);
        assert_eq!(ids("event_types=video", None), Vec::<String>::new());
        assert_eq!(ids("event_types=", None), ["e1", "e2", "e3"]);
    }

    #[test]
    fn the_event_period_is_inclusive_utc_dates_of_occurred_at() {
        assert_eq!(ids("period_from=2026-03-02", None), ["e2", "e3"]);
        assert_eq!(ids("period_to=2026-03-02", None), ["e1", "e2"]);
        assert_eq!(ids("period_from=2026-03-02&period_to=2026-03-02", None), ["e2"]);
    }

    #[test]
    fn an_external_id_filter_keeps_only_the_customer_holding_it() {
        assert_eq!(ids("customer_external_id=ext-b", Some("cust_b")), ["e3"]);
        assert_eq!(ids("customer_external_id=unknown", None), Vec::<String>::new());
        assert_eq!(
            ids("customer_external_id=ext-b&customer_id=cust_a", Some("cust_b")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn events_are_listed_newest_first_with_stable_ties() {
        let mut list = events();
        let mut tie = stored("e0", "cust_c", "chat", "2026-03-03T00:00:00Z", Vec::new());
        tie.created_at = at("2026-03-09T00:00:00Z");
        let mut same = stored("e3", "cust_a", "chat", "2026-03-03T00:00:00Z", Vec::new());
        same.created_at = at("2026-03-10T00:00:00Z");
        list.push(tie);
        list.push(same);
        list.sort_by(newest_first);
        let order: Vec<_> = list.iter().map(|e| format!("{}/{}", e.event.id, e.customer_id)).collect();
        assert_eq!(order, ["e3/cust_a", "e3/cust_b", "e0/cust_c", "e2/cust_a", "e1/cust_a"]);
    }

    #[test]
    fn fee_totals_are_shown_only_for_fees_in_one_currency() {
        let one = [fee("0.05", "USD"), fee("0.10", "USD")];
        assert_eq!(fee_total(&one), Some((Decimal::from_str("0.15").unwrap(), "USD".into())));
        assert_eq!(fee_total(&[fee("0.05", "USD"), fee("1", "CREDIT")]), None);
        assert_eq!(fee_total(&[]), None);
        let item = list_item(&events()[0], "ext-a".into());
        assert_eq!(
            (item.total_fees.map(|d| d.to_string()), item.fee_currency.as_deref()),
            (Some("0.05".into()), Some("USD"))
        );
        assert!(item.has_fees);
        assert_eq!(item.stats.map(|s| s.currency), Some("USD".to_string()));
        let none = list_item(&events()[1], String::new());
        assert!(!none.has_fees && none.total_fees.is_none() && none.fee_currency.is_none());
    }
}
