//! The money check: every customer's `default:USD` balance must equal the funding plus the mix
//! adjustments minus the fees of the distinct events acknowledged for it. Balances are polled (a
//! few customers at a time) until they match or the settle timeout passes; whatever still differs
//! then is a mismatch and fails the run.

use super::http::{Connection, Endpoint};
use super::pricing::expected_balance;
use super::report::{Mismatch, Verification};
use super::send::SendOutcome;
use anyhow::Context;
use schemas::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Balances read at once.
const IN_FLIGHT: usize = 8;
/// Pause between two reads of a balance that does not match yet.
const POLL: Duration = Duration::from_millis(100);

/// Checks every customer of `customers` (in plan order, matching `sent.tallies`).
pub async fn balances(
    endpoint: &Arc<Endpoint>,
    customers: &[String],
    sent: &SendOutcome,
    timeout: Duration,
) -> anyhow::Result<Verification> {
    let deadline = Instant::now() + timeout;
    let expected: Vec<(String, Decimal)> = customers
        .iter()
        .zip(&sent.tallies)
        .map(|(id, t)| (id.clone(), expected_balance(&t.tokens, t.adjustments)))
        .collect();
    let expected = Arc::new(expected);
    let lanes: Vec<_> = (0..IN_FLIGHT.min(customers.len()))
        .map(|lane| {
            let (endpoint, expected) = (endpoint.clone(), expected.clone());
            tokio::spawn(async move {
                let mut conn = Connection::new(endpoint);
                let mut mismatches = Vec::new();
                for (id, want) in expected.iter().skip(lane).step_by(IN_FLIGHT) {
                    if let Some(m) = settle(&mut conn, id, *want, deadline).await {
                        mismatches.push(m);
                    }
                }
                mismatches
            })
        })
        .collect();
    let mut mismatches = Vec::new();
    for lane in lanes {
        mismatches.extend(lane.await.context("a verification task panicked")?);
    }
    Ok(Verification { customers_checked: customers.len(), passed: mismatches.is_empty(), mismatches })
}

/// Polls one balance until it is `want` (`None`) or the deadline passes (the mismatch).
async fn settle(conn: &mut Connection, id: &str, want: Decimal, deadline: Instant) -> Option<Mismatch> {
    loop {
        let actual = balance(conn, id).await.ok();
        if actual == Some(want) {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(Mismatch { customer_id: id.to_string(), expected: want, actual });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The `available` balance of the customer's `default:USD` account.
async fn balance(conn: &mut Connection, id: &str) -> anyhow::Result<Decimal> {
    let path = format!("/customers/{id}/wallet/default:USD");
    let answer = conn.get(&path).await?;
    anyhow::ensure!(answer.status.is_success(), "GET {path} answered {}", answer.status);
    available(&answer.body).with_context(|| format!("the answer of GET {path}"))
}

/// `available` of a wallet account body, exact.
pub fn available(body: &[u8]) -> anyhow::Result<Decimal> {
    #[derive(serde::Deserialize)]
    struct Account {
        available: Decimal,
    }
    Ok(serde_json::from_slice::<Account>(body)?.available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_are_read_exactly() {
        let body = br#"{"id":"default:USD","name":"default","asset":"USD","available":999999.9876543,"pending_in":0}"#;
        assert_eq!(available(body).unwrap(), "999999.9876543".parse::<Decimal>().unwrap());
        assert!(available(b"{}").is_err());
    }
}
