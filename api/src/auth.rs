//! API keys. A key is presented in `X-CREDYT-API-KEY`; the store holds only its SHA-256, keyed by
//! the hex digest, with the environment (`test`/`live`) it belongs to.

use crate::error::ApiError;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::typed::{get_doc, list_docs};
use store::{Expect, Op, SharedStore, Store, StoreError, Table};

pub const HEADER: &str = "x-credyt-api-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Test,
    Live,
}

impl Environment {
    pub const ALL: [Environment; 2] = [Environment::Test, Environment::Live];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Live => "live",
        }
    }
}

/// A stored key (`Table::ApiKeys` of its environment's store, keyed by the key's SHA-256).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub environment: Environment,
    pub created_at: schemas::Timestamp,
    /// What the key is for (`keys create --name`); the key from `DRAWDOWN_API_KEY` is named
    /// after it, as are keys stored before keys had names.
    #[serde(default = "configured_name")]
    pub name: String,
    /// The key's first characters (`sk_live_1f2e`), to tell keys apart; never the key.
    #[serde(default)]
    pub prefix: String,
    /// When a request last used the key (to the minute: written at most once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<schemas::Timestamp>,
}

/// The name of the key `DRAWDOWN_API_KEY` configures.
pub const CONFIGURED: &str = "DRAWDOWN_API_KEY";

fn configured_name() -> String {
    CONFIGURED.to_string()
}

/// How often a key's `last_used_at` is written.
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Characters of the key kept as its `prefix`.
const SHOWN_PREFIX: usize = 12;

impl ApiKeyRecord {
    pub fn new(key: &str, environment: Environment, name: &str) -> Self {
        Self {
            environment,
            created_at: Utc::now(),
            name: name.to_string(),
            prefix: key.chars().take(SHOWN_PREFIX).collect(),
            last_used_at: None,
        }
    }
}

/// A key's public id: `key_` and the first 16 hex digits of its SHA-256 (the store key), so a
/// key is revoked by a prefix read and nothing but the hash is stored.
pub fn key_id(digest: &str) -> String {
    format!("key_{}", &digest[..digest.len().min(16)])
}

/// The stored hash prefix an id names, if it is an id.
pub fn digest_prefix(id: &str) -> Option<&str> {
    id.strip_prefix("key_").filter(|p| p.len() == 16 && p.bytes().all(|b| b.is_ascii_hexdigit()))
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

/// The environment a key belongs to, from its prefix: `sk_live_…` keys are live keys; every
/// other key (`sk_test_…`, or any `DRAWDOWN_API_KEY`) is looked up in the test environment.
pub fn environment_of(key: &str) -> Environment {
    if key.starts_with("sk_live_") {
        Environment::Live
    } else {
        Environment::Test
    }
}

/// Accepts `key` if `store` (its environment's) holds it. Nothing is cached: a revoked key is
/// refused by the next request, in every process. Records when the key was last used, at most
/// once a minute, off the request's path.
pub async fn authenticate(store: &SharedStore, key: &str, environment: Environment) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    let digest = hash(key);
    let Some(doc) = get_doc::<ApiKeyRecord>(store.as_ref(), Table::ApiKeys, &digest).await? else {
        return Err(ApiError::Unauthorized);
    };
    if doc.value.environment != environment {
        return Err(ApiError::Unauthorized);
    }
    let now = Utc::now();
    if doc.value.last_used_at.is_none_or(|at| now - at >= LAST_USED_RESOLUTION) {
        let mut record = doc.value;
        record.last_used_at = Some(now);
        let store = store.clone();
        tokio::spawn(async move {
            // Conditional on the revision read: of concurrent requests one writes; and a key
            // revoked meanwhile is not brought back.
            let op = Op::put_doc(Table::ApiKeys, digest, &record)
                .map(|op| op.expect(Expect::Revision(doc.revision)));
            if let Ok(op) = op {
                let _ = store.write(vec![op]).await;
            }
        });
    }
    Ok(())
}

/// Makes sure the server has a test-mode key. With `configured` (from `DRAWDOWN_API_KEY`), that
/// key replaces the one configured before (keys created with `drawdown keys` stay). Otherwise,
/// on first start (no test key at all), a key is generated and returned so the caller can print
/// it once; `None` means no key was generated.
pub async fn provision_test_key(
    store: &dyn Store,
    configured: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let existing = list_docs::<ApiKeyRecord>(store, Table::ApiKeys, "").await?;
    let test_keys: Vec<_> = existing.iter().filter(|d| d.value.environment == Environment::Test).collect();
    match configured {
        Some(key) => {
            let digest = hash(key);
            let mut batch: Vec<Op> = test_keys
                .iter()
                .filter(|d| d.key != digest && d.value.name == CONFIGURED)
                .map(|d| Op::delete(Table::ApiKeys, d.key.clone()))
                .collect();
            if !test_keys.iter().any(|d| d.key == digest) {
                let record = ApiKeyRecord::new(key, Environment::Test, CONFIGURED);
                batch.push(Op::put_doc(Table::ApiKeys, digest, &record)?);
            }
            if !batch.is_empty() {
                store.write(batch).await?;
            }
            Ok(None)
        }
        None if test_keys.is_empty() => {
            let key = generate_key(Environment::Test);
            let record = ApiKeyRecord::new(&key, Environment::Test, "generated on first start");
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
