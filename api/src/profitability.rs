//! The profitability reports (`semantics.md` §7): `GET /customers/{id}/stats`,
//! `GET /customers/stats` and `GET /vendors/{id}/stats`. These handlers load transactions and
//! events; every figure is computed by [`crate::stats`].

use crate::docs::{load, paginate};
use crate::error::ApiError;
use crate::extract::Params;
use crate::extract::Path;
use crate::stats::{totals_by_customer, vendor_stats as vendor_report, Period, Totals, VendorRef};
use crate::tenancy::Scope;
use axum::Json;
use chrono::Utc;
use schemas::customer::{Customer, Vendor};
use schemas::ledger::{
    CustomerProfitability, CustomerStatsItem, CustomerStatsPage, PeriodFilter, StoredEvent, Transaction,
    VendorStats, VendorStatsFilter,
};
use schemas::wire::PageRequest;
use store::typed::list_docs;
use store::{Store, Table};

fn resolve(period: PeriodFilter) -> Result<Period, ApiError> {
    Ok(Period::resolve(period.period_from, period.period_to, Utc::now().date_naive())?)
}

async fn all_events(store: &dyn Store) -> Result<Vec<StoredEvent>, ApiError> {
    Ok(list_docs::<StoredEvent>(store, Table::Events, "").await?.into_iter().map(|d| d.value).collect())
}

async fn transactions(store: &dyn Store, prefix: &str) -> Result<Vec<Transaction>, ApiError> {
    Ok(list_docs::<Transaction>(store, Table::Transactions, prefix)
        .await?
        .into_iter()
        .map(|d| d.value)
        .collect())
}

pub async fn customer_stats(
    Scope(state): Scope,
    Path(id): Path<String>,
    Params(period): Params<PeriodFilter>,
) -> Result<Json<CustomerProfitability>, ApiError> {
    let store = state.store.as_ref();
    load::<Customer>(store, Table::Customers, "customer", &id).await?;
    let period = resolve(period)?;
    let transactions = transactions(store, &format!("{id}/")).await?;
    let events: Vec<StoredEvent> =
        all_events(store).await?.into_iter().filter(|e| e.customer_id == id).collect();
    let totals = totals_by_customer(&transactions, &events, &period)?;
    Ok(Json(totals.get(&id).copied().unwrap_or_default().stats()?))
}

/// Every customer's stats (paged, in creation order) and the summary over all customers.
pub async fn list_customer_stats(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
    Params(period): Params<PeriodFilter>,
) -> Result<Json<CustomerStatsPage>, ApiError> {
    let store = state.store.as_ref();
    let period = resolve(period)?;
    let customers: Vec<Customer> =
        list_docs::<Customer>(store, Table::Customers, "").await?.into_iter().map(|d| d.value).collect();
    // Totals of every customer, of which only the tenant's own (listed above) are reported.
    let totals = totals_by_customer(&transactions(store, "").await?, &all_events(store).await?, &period)?;
    let mut summary = Totals::default();
    let mut items = Vec::with_capacity(customers.len());
    for customer in customers {
        let own = totals.get(customer.id.as_str()).copied().unwrap_or_default();
        summary.add(&own)?;
        items.push(CustomerStatsItem {
            id: customer.id.to_string(),
            external_id: customer.external_id,
            name: customer.name,
            stats: own.stats()?,
        });
    }
    let page = paginate(items, page, |item| item);
    Ok(Json(CustomerStatsPage {
        summary: summary.stats()?,
        period_from: period.from,
        period_to: period.to,
        items: page.items,
        total_count: page.total_count,
        limit: page.limit,
        offset: page.offset,
    }))
}

pub async fn vendor_stats(
    Scope(state): Scope,
    Path(id): Path<String>,
    Params(period): Params<PeriodFilter>,
    Params(filter): Params<VendorStatsFilter>,
) -> Result<Json<VendorStats>, ApiError> {
    let store = state.store.as_ref();
    let vendor = load::<Vendor>(store, Table::Vendors, "vendor", &id).await?.value;
    let period = resolve(period)?;
    // Only the events of customers the request's tenant sees.
    let events =
        crate::tenancy::only_visible(store, all_events(store).await?, |e| e.customer_id.as_str()).await?;
    let vendor_ref = VendorRef { id: vendor.id.as_str(), external_id: vendor.external_id.as_deref() };
    let stats =
        vendor_report(events.iter().map(|e| &e.event), vendor_ref, &period, filter.category.as_deref())?;
    Ok(Json(stats))
}
