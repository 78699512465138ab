//! `drawdown keys create|list|revoke`: API keys in the store of their environment, against the
//! same data directory or `--store` URL the server uses. Only the key's SHA-256 is stored; a key
//! is printed once, at creation. Servers read the key table on every request, so a revoked key
//! is refused by the next request in every process.
//!
//! A data directory a running `drawdown serve` holds (redb allows one process per file) is
//! reached through the socket the server serves its stores on (`<data_dir>/store.sock`).

use anyhow::Context;
use api::auth::{self, ApiKeyRecord, Environment};
use schemas::Timestamp;
use serde::Serialize;
use std::path::Path;
use store::typed::list_docs;
use store::{Op, SharedStore, Table};

/// The key table of each environment.
pub struct KeyStores {
    pub test: SharedStore,
    pub live: SharedStore,
}

/// A key as listed: never the key itself.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub environment: Environment,
    pub prefix: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

impl KeyStores {
    /// The stores of a data directory: through a running server's socket, else opened directly.
    pub async fn data_dir(dir: &Path) -> anyhow::Result<Self> {
        let socket = crate::backends::store_socket(dir);
        if socket.exists() {
            let test: SharedStore = std::sync::Arc::new(store::RemoteStore::unix(&socket, "")?);
            let live: SharedStore = std::sync::Arc::new(store::RemoteStore::unix(&socket, "/live")?);
            if test.get(Table::Meta, "readiness").await.is_ok() {
                return Ok(Self { test, live });
            }
        }
        Self::url(&crate::backends::embedded_store_url(dir)).await
    }

    /// The stores of the test environment's store URL and the live one beside it.
    pub async fn url(url: &str) -> anyhow::Result<Self> {
        let live_url = crate::backends::environment_url(url, Environment::Live)?;
        let test = store::connect(url).await.with_context(|| format!("opening the store at {url}"))?;
        let live =
            store::connect(&live_url).await.with_context(|| format!("opening the store at {live_url}"))?;
        Ok(Self { test, live })
    }

    fn of(&self, environment: Environment) -> &SharedStore {
        match environment {
            Environment::Test => &self.test,
            Environment::Live => &self.live,
        }
    }

    /// Creates a key of `environment` named `name`; returns the key (shown once) and its view.
    pub async fn create(&self, environment: Environment, name: &str) -> anyhow::Result<(String, KeyView)> {
        anyhow::ensure!(
            !name.trim().is_empty() && name.chars().count() <= 255,
            "a key's name is 1 to 255 characters"
        );
        let key = auth::generate_key(environment);
        let digest = auth::hash(&key);
        let record = ApiKeyRecord::new(&key, environment, name);
        let op = Op::put_doc(Table::ApiKeys, digest.clone(), &record)?.expect(store::Expect::Absent);
        self.of(environment).write(vec![op]).await.context("storing the key")?;
        Ok((key, view(&digest, record)))
    }

    /// Every key of both environments, oldest first.
    pub async fn list(&self) -> anyhow::Result<Vec<KeyView>> {
        let mut keys = Vec::new();
        for environment in Environment::ALL {
            let docs = list_docs::<ApiKeyRecord>(self.of(environment).as_ref(), Table::ApiKeys, "").await?;
            keys.extend(docs.into_iter().map(|d| view(&d.key, d.value)));
        }
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Deletes the key `id`; false if no key has that id.
    pub async fn revoke(&self, id: &str) -> anyhow::Result<bool> {
        let prefix = auth::digest_prefix(id)
            .with_context(|| format!("`{id}` is not a key id (key_ and 16 hex digits)"))?
            .to_ascii_lowercase();
        for environment in Environment::ALL {
            let store = self.of(environment);
            let docs = list_docs::<ApiKeyRecord>(store.as_ref(), Table::ApiKeys, &prefix).await?;
            if !docs.is_empty() {
                let ops = docs.into_iter().map(|d| Op::delete(Table::ApiKeys, d.key)).collect();
                store.write(ops).await.context("deleting the key")?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl KeyView {
    /// The heading of [`KeyView::row`]'s columns.
    pub const HEADING: &'static str =
        "id                    env   prefix          created               last used             name";

    /// One line of `drawdown keys list`.
    pub fn row(&self) -> String {
        let time = |t: &Timestamp| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let last = self.last_used_at.as_ref().map_or_else(|| "never".to_string(), time);
        format!(
            "{:<20}  {:<4}  {:<14}  {:<20}  {:<20}  {}",
            self.id,
            self.environment.as_str(),
            self.prefix,
            time(&self.created_at),
            last,
            self.name
        )
    }
}

fn view(digest: &str, record: ApiKeyRecord) -> KeyView {
    KeyView {
        id: auth::key_id(digest),
        name: record.name,
        environment: record.environment,
        prefix: record.prefix,
        created_at: record.created_at,
        last_used_at: record.last_used_at,
    }
}
