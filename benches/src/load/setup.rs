//! Before the load: the run's product (created and published once, under a unique code) and its
//! customers, created 16 at a time, each subscribed to the product and funded with one
//! `external_topup` large enough never to run out.

use super::http::{until_answered, Answered, Connection, Endpoint};
use super::pricing::{customer_body, product_body, topup_body, FUNDING_USD};
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::Method;
use schemas::Decimal;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Customers created at once.
const IN_FLIGHT: usize = 16;

/// Creates the product and `count` funded customers; returns the customer ids, in order.
pub async fn prepare(
    endpoint: &Arc<Endpoint>,
    run: &str,
    count: usize,
    give_up_after: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut conn = Connection::new(endpoint.clone());
    let product =
        created(&mut conn, "/products", product_body(&format!("loadgen-{run}")).to_string(), give_up_after)
            .await
            .context("creating the product")?;
    let product_id = id_of(&product)?;
    let mut tasks = Vec::new();
    for lane in 0..IN_FLIGHT.min(count) {
        let (endpoint, run, product_id) = (endpoint.clone(), run.to_string(), product_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::new(endpoint);
            let mut ids = Vec::new();
            for index in (lane..count).step_by(IN_FLIGHT) {
                let id = customer(&mut conn, &run, index, &product_id, give_up_after).await?;
                ids.push((index, id));
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = vec![String::new(); count];
    for task in tasks {
        for (index, id) in task.await.context("a setup task panicked")?? {
            ids[index] = id;
        }
    }
    Ok(ids)
}

/// Creates customer `index`, subscribed to the product, and funds it.
async fn customer(
    conn: &mut Connection,
    run: &str,
    index: usize,
    product_id: &str,
    give_up_after: Duration,
) -> anyhow::Result<String> {
    let body = customer_body(run, index, product_id).to_string();
    let created = created(conn, "/customers", body, give_up_after)
        .await
        .with_context(|| format!("creating customer {index}"))?;
    let id = id_of(&created)?;
    let topup = topup_body(&format!("{run}-fund-{index}"), Decimal::from(FUNDING_USD));
    created_raw(conn, &format!("/customers/{id}/wallet/adjustments"), topup, give_up_after)
        .await
        .with_context(|| format!("funding customer {id}"))?;
    Ok(id)
}

/// POSTs `body` (retrying overload and transport errors) and expects a 2xx JSON answer.
async fn created(
    conn: &mut Connection,
    path: &str,
    body: String,
    give_up_after: Duration,
) -> anyhow::Result<Value> {
    let answered = created_raw(conn, path, body, give_up_after).await?;
    serde_json::from_slice(&answered.answer.body).with_context(|| format!("the answer of POST {path}"))
}

async fn created_raw(
    conn: &mut Connection,
    path: &str,
    body: String,
    give_up_after: Duration,
) -> anyhow::Result<Answered> {
    let pause = || Duration::from_millis(100);
    let answered =
        until_answered(conn, &Method::POST, path, &Bytes::from(body), give_up_after, pause, |_| {}).await?;
    let status = answered.answer.status;
    if !status.is_success() {
        bail!("POST {path} answered {status}: {}", String::from_utf8_lossy(&answered.answer.body));
    }
    Ok(answered)
}

fn id_of(created: &Value) -> anyhow::Result<String> {
    created["id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("no `id` in {created}"))
}
