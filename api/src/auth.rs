//! API keys. A key is presented in `X-CREDYT-API-KEY`; the store holds only its SHA-256, keyed by
//! the hex digest, with the environment (`test`/`live`) it belongs to.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::typed::{get_doc, list_docs};
use store::{Op, Store, StoreError, Table};

pub const HEADER: &str = "x-credyt-api-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Test,
    Live,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Live => "live",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub environment: Environment,
    pub created_at: schemas::Timestamp,
}

pub fn hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// Lower-case hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    schemas::ids::push_hex(&mut hex, &Sha256::digest(bytes));
    hex
}

/// Rejects requests without a known key; passes the key's environment on to the handlers.
pub async fn require_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let record = get_doc::<ApiKeyRecord>(state.store.as_ref(), Table::ApiKeys, &hash(key))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    req.extensions_mut().insert(record.value.environment);
    Ok(next.run(req).await)
}

/// Makes sure the server has a test-mode key. With `configured` (from `DRAWDOWN_API_KEY`), that
/// key becomes the only test key. Otherwise, on first start, a key is generated and returned so
/// the caller can print it once; `None` means a key already existed.
pub async fn provision_test_key(
    store: &dyn Store,
    configured: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let existing = list_docs::<ApiKeyRecord>(store, Table::ApiKeys, "").await?;
    let test_keys: Vec<_> = existing.iter().filter(|d| d.value.environment == Environment::Test).collect();
    let record = ApiKeyRecord { environment: Environment::Test, created_at: Utc::now() };
    match configured {
        Some(key) => {
            let digest = hash(key);
            let mut batch: Vec<Op> = test_keys
                .iter()
                .filter(|d| d.key != digest)
                .map(|d| Op::delete(Table::ApiKeys, d.key.clone()))
                .collect();
            if !test_keys.iter().any(|d| d.key == digest) {
                batch.push(Op::put_doc(Table::ApiKeys, digest, &record)?);
            }
            if !batch.is_empty() {
                store.write(batch).await?;
            }
            Ok(None)
        }
        None if test_keys.is_empty() => {
            let key = generate_key(Environment::Test);
            store.write(vec![Op::put_doc(Table::ApiKeys, hash(&key), &record)?]).await?;
            Ok(Some(key))
        }
        None => Ok(None),
    }
}

/// `sk_test_` or `sk_live_` followed by 64 random hex characters (256 bits).
pub fn generate_key(environment: Environment) -> String {
    let random: String = (0..2).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    // A v4 UUID carries 122 random bits; two of them, hashed, give 256 bits of key material.
    format!("sk_{}_{}", environment.as_str(), hash(&random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_sha256_hex() {
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let key = generate_key(Environment::Test);
        assert!(key.starts_with("sk_test_") && key.len() == 8 + 64, "{key}");
        assert_ne!(key, generate_key(Environment::Test));
    }
}
