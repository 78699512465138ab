//! The remote backend: a store served over HTTP by another process (`drawdown store`, which
//! serves its embedded store), so that several processes share one store without a ScyllaDB
//! cluster: the distributed roles of a small deployment, and the tests that kill them.
//!
//! URL: `http://host:port`. The protocol is one route, `POST /v1/store`, whose JSON body is a
//! [`Request`] and whose answer is a [`Response`]; [`handle`] answers a request from any
//! [`Store`], so the server is only HTTP around it. Records travel as text: documents must be
//! UTF-8 (every document the services store is JSON). When `DRAWDOWN_STORE_TOKEN` is set, the
//! client sends it as a bearer token and the server refuses requests without it.
//!
//! The guarantees are those of the store behind the server (the embedded store: a batch is one
//! transaction, durable when answered). A request whose answer is lost (a cut connection, a
//! timeout) may or may not have been applied, as on ScyllaDB; callers already treat a write error
//! that way.

use crate::model::{unique_index, Expect, ListRange, Listing, Op, Record, StoreError, Table, UniqueKey};
use crate::Store;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The route of the protocol.
pub const PATH: &str = "/v1/store";
/// The environment variable holding the shared bearer token, on both sides.
pub const TOKEN_ENV: &str = "DRAWDOWN_STORE_TOKEN";
/// The longest a request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A record on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireRecord {
    pub key: String,
    pub revision: u64,
    pub doc: String,
}

/// An operation on the wire; unique keys as `[index, value]` pairs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WireOp {
    Put { table: Table, key: String, doc: String, expect: Expect, unique: Vec<(String, String)> },
    Delete { table: Table, key: String, expect: Expect },
}

/// One call of the [`Store`] trait.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Request {
    Get { table: Table, key: String },
    GetMany { table: Table, keys: Vec<String> },
    List { table: Table, prefix: String, offset: usize, limit: Option<usize> },
    Range { table: Table, from: String, to: String, limit: usize },
    FindUnique { table: Table, index: String, value: String },
    Write { ops: Vec<WireOp> },
}

/// A [`StoreError`] on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum WireError {
    Conflict { table: Table, key: String, expected: Expect, found: Option<u64> },
    UniqueViolation { table: Table, index: String, value: String },
    Corrupt { table: Table, key: String, reason: String },
    Backend { message: String },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Record { record: Option<WireRecord> },
    Records { records: Vec<Option<WireRecord>> },
    Listing { records: Vec<WireRecord>, total: usize },
    Key { key: Option<String> },
    Written,
    Failed(WireError),
}

/// A stored record as text; a document that is not UTF-8 cannot be served, and is reported as
/// what it is, a corrupt record (not a backend failure worth retrying).
fn to_wire(table: Table, record: Record) -> Result<WireRecord, StoreError> {
    match String::from_utf8(record.doc) {
        Ok(doc) => Ok(WireRecord { key: record.key, revision: record.revision, doc }),
        Err(_) => Err(StoreError::Corrupt {
            table,
            key: record.key,
            reason: "the document is not UTF-8, which the remote store cannot carry".to_string(),
        }),
    }
}

fn from_wire(record: WireRecord) -> Record {
    Record { key: record.key, revision: record.revision, doc: record.doc.into_bytes() }
}

fn op_to_wire(op: Op) -> Result<WireOp, StoreError> {
    Ok(match op {
        Op::Put { table, key, doc, expect, unique } => {
            let doc = String::from_utf8(doc)
                .map_err(|_| StoreError::Backend(format!("the document for {table}/{key} is not UTF-8")))?;
            let unique = unique.into_iter().map(|u| (u.index.to_string(), u.value)).collect();
            WireOp::Put { table, key, doc, expect, unique }
        }
        Op::Delete { table, key, expect } => WireOp::Delete { table, key, expect },
    })
}

fn op_from_wire(op: WireOp) -> Result<Op, StoreError> {
    Ok(match op {
        WireOp::Put { table, key, doc, expect, unique } => {
            let unique = unique
                .into_iter()
                .map(|(index, value)| {
                    let index = unique_index(&index)
                        .ok_or_else(|| StoreError::Backend(format!("unknown unique index `{index}`")))?;
                    Ok(UniqueKey { index, value })
                })
                .collect::<Result<_, StoreError>>()?;
            Op::Put { table, key, doc: doc.into_bytes(), expect, unique }
        }
        WireOp::Delete { table, key, expect } => Op::Delete { table, key, expect },
    })
}

fn error_to_wire(error: StoreError) -> WireError {
    match error {
        StoreError::Conflict { table, key, expected, found } => {
            WireError::Conflict { table, key, expected, found }
        }
        StoreError::UniqueViolation { table, index, value } => {
            WireError::UniqueViolation { table, index: index.to_string(), value }
        }
        StoreError::Corrupt { table, key, reason } => WireError::Corrupt { table, key, reason },
        StoreError::Backend(message) => WireError::Backend { message },
    }
}

fn error_from_wire(error: WireError) -> StoreError {
    match error {
        WireError::Conflict { table, key, expected, found } => {
            StoreError::Conflict { table, key, expected, found }
        }
        WireError::UniqueViolation { table, index, value } => match unique_index(&index) {
            Some(index) => StoreError::UniqueViolation { table, index, value },
            None => StoreError::Backend(format!("{table}.{index} `{value}` is already taken")),
        },
        WireError::Corrupt { table, key, reason } => StoreError::Corrupt { table, key, reason },
        WireError::Backend { message } => StoreError::Backend(format!("store server: {message}")),
    }
}

/// Answers `request` from `store`: the whole of the server but HTTP.
pub async fn handle(store: &dyn Store, request: Request) -> Response {
    let answer = async {
        Ok(match request {
            Request::Get { table, key } => Response::Record {
                record: store.get(table, &key).await?.map(|r| to_wire(table, r)).transpose()?,
            },
            Request::GetMany { table, keys } => {
                let records = store.get_many(table, &keys).await?;
                let records = records
                    .into_iter()
                    .map(|r| r.map(|r| to_wire(table, r)).transpose())
                    .collect::<Result<_, _>>()?;
                Response::Records { records }
            }
            Request::List { table, prefix, offset, limit } => {
                let listing = store.list(table, &prefix, ListRange { offset, limit }).await?;
                let records =
                    listing.records.into_iter().map(|r| to_wire(table, r)).collect::<Result<_, _>>()?;
                Response::Listing { records, total: listing.total }
            }
            Request::Range { table, from, to, limit } => {
                let records = store.range(table, &from, &to, limit).await?;
                let records = records.into_iter().map(|r| to_wire(table, r)).collect::<Result<_, _>>()?;
                Response::Listing { records, total: 0 }
            }
            Request::FindUnique { table, index, value } => {
                Response::Key { key: store.find_unique(table, &index, &value).await? }
            }
            Request::Write { ops } => {
                let batch = ops.into_iter().map(op_from_wire).collect::<Result<_, _>>()?;
                store.write(batch).await?;
                Response::Written
            }
        })
    };
    answer.await.unwrap_or_else(|e: StoreError| Response::Failed(error_to_wire(e)))
}

/// How the client reaches its server.
enum Transport {
    Tcp(Client<HttpConnector, Full<Bytes>>),
    /// A Unix socket: `drawdown serve` serves its data directory's stores on
    /// `<data_dir>/store.sock` (to `drawdown keys` while it runs), guarded by the file's mode.
    Unix(Client<UnixConnector, Full<Bytes>>),
}

/// Connects every request to one Unix socket.
#[derive(Clone)]
struct UnixConnector(std::sync::Arc<std::path::Path>);

impl tower_service::Service<hyper::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let path = std::sync::Arc::clone(&self.0);
        Box::pin(
            async move { tokio::net::UnixStream::connect(&*path).await.map(hyper_util::rt::TokioIo::new) },
        )
    }
}

/// The client of a store server.
pub struct RemoteStore {
    transport: Transport,
    uri: hyper::Uri,
    authorization: Option<String>,
}

impl RemoteStore {
    /// A client of the server at `http://host:port` (nothing is sent until the first call),
    /// with the token of `DRAWDOWN_STORE_TOKEN` if set.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_token(url, std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()).as_deref())
    }

    /// A client of the server at `http://host:port[/base]` that sends `token` as a bearer
    /// token. A server serves one store per base path (`/live`: the live environment's).
    pub fn with_token(url: &str, token: Option<&str>) -> Result<Self, StoreError> {
        let base = url.trim_end_matches('/');
        let (host, path) = base
            .strip_prefix("http://")
            .map(|rest| rest.split_once('/').map_or((rest, String::new()), |(h, p)| (h, format!("/{p}"))))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| {
                StoreError::Backend(format!("a store server URL is http://host:port, not `{url}`"))
            })?;
        let uri = format!("http://{host}{path}{PATH}")
            .parse()
            .map_err(|e| StoreError::Backend(format!("store server URL `{url}`: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let transport = Transport::Tcp(Client::builder(TokioExecutor::new()).build(connector));
        let authorization = token.map(|t| format!("Bearer {t}"));
        if let Some(value) = &authorization {
            hyper::header::HeaderValue::from_str(value)
                .map_err(|_| StoreError::Backend(format!("{TOKEN_ENV} is not a valid header value")))?;
        }
        Ok(Self { transport, uri, authorization })
    }

    /// A client of the store a server serves on the Unix socket `socket` under `base` (`""`:
    /// the test environment's, `"/live"`: the live one's).
    pub fn unix(socket: &std::path::Path, base: &str) -> Result<Self, StoreError> {
        let uri = format!("http://localhost{base}{PATH}")
            .parse()
            .map_err(|e| StoreError::Backend(format!("store socket base `{base}`: {e}")))?;
        let connector = UnixConnector(std::sync::Arc::from(socket));
        let transport = Transport::Unix(Client::builder(TokioExecutor::new()).build(connector));
        Ok(Self { transport, uri, authorization: None })
    }

    async fn call(&self, request: &Request) -> Result<Response, StoreError> {
        let body =
            serde_json::to_vec(request).map_err(|e| StoreError::Backend(format!("encode a request: {e}")))?;
        let mut builder =
            hyper::Request::post(&self.uri).header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            builder = builder.header(hyper::header::AUTHORIZATION, authorization);
        }
        let http = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| StoreError::Backend(format!("build a request: {e}")))?;
        let exchange = async {
            let response = match &self.transport {
                Transport::Tcp(client) => client.request(http).await,
                Transport::Unix(client) => client.request(http).await,
            }
            .map_err(|e| format!("{e:?}"))?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
            }
            serde_json::from_slice::<Response>(&bytes).map_err(|e| format!("undecodable answer: {e}"))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(Response::Failed(error))) => Err(error_from_wire(error)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(StoreError::Backend(format!("store server at {}: {error}", self.uri))),
            Err(_) => Err(StoreError::Backend(format!(
                "store server at {}: no answer in {REQUEST_TIMEOUT:?}",
                self.uri
            ))),
        }
    }
}

fn unexpected(response: Response) -> StoreError {
    StoreError::Backend(format!("store server answered out of turn: {response:?}"))
}

#[async_trait]
impl Store for RemoteStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Record>, StoreError> {
        match self.call(&Request::Get { table, key: key.to_string() }).await? {
            Response::Record { record } => Ok(record.map(from_wire)),
            other => Err(unexpected(other)),
        }
    }

    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        match self.call(&Request::GetMany { table, keys: keys.to_vec() }).await? {
            Response::Records { records } if records.len() == keys.len() => {
                Ok(records.into_iter().map(|r| r.map(from_wire)).collect())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError> {
        let request =
            Request::List { table, prefix: prefix.to_string(), offset: range.offset, limit: range.limit };
        match self.call(&request).await? {
            Response::Listing { records, total } => {
                Ok(Listing { records: records.into_iter().map(from_wire).collect(), total })
            }
            other => Err(unexpected(other)),
        }
    }

    async fn range(
        &self,
        table: Table,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let request = Request::Range { table, from: from.to_string(), to: to.to_string(), limit };
        match self.call(&request).await? {
            Response::Listing { records, .. } => Ok(records.into_iter().map(from_wire).collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn find_unique(
        &self,
        table: Table,
        index: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let request = Request::FindUnique { table, index: index.to_string(), value: value.to_string() };
        match self.call(&request).await? {
            Response::Key { key } => Ok(key),
            other => Err(unexpected(other)),
        }
    }

    async fn write(&self, batch: Vec<Op>) -> Result<(), StoreError> {
        let ops = batch.into_iter().map(op_to_wire).collect::<Result<_, _>>()?;
        match self.call(&Request::Write { ops }).await? {
            Response::Written => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_host_and_port_and_an_optional_base_path() {
        assert!(RemoteStore::connect("http://127.0.0.1:7000").is_ok());
        assert!(RemoteStore::connect("http://store:7000/").is_ok());
        let live = RemoteStore::connect("http://store:7000/live").expect("a base path");
        assert_eq!(live.uri.to_string(), "http://store:7000/live/v1/store");
        for bad in ["http://", "https://a:1", "a:1", "http:///live"] {
            assert!(RemoteStore::connect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_cross_the_wire_unchanged() {
        let conflict = StoreError::Conflict {
            table: Table::Offsets,
            key: "k".into(),
            expected: Expect::Revision(3),
            found: None,
        };
        let back = error_from_wire(error_to_wire(conflict));
        assert!(
            matches!(back, StoreError::Conflict { expected: Expect::Revision(3), found: None, .. }),
            "{back}"
        );
        let taken =
            StoreError::UniqueViolation { table: Table::Customers, index: "external_id", value: "x".into() };
        let back = error_from_wire(error_to_wire(taken));
        assert!(matches!(back, StoreError::UniqueViolation { index: "external_id", .. }), "{back}");
    }

    #[test]
    fn an_unknown_unique_index_is_refused_not_leaked() {
        let op = WireOp::Put {
            table: Table::Customers,
            key: "c".into(),
            doc: "{}".into(),
            expect: Expect::Any,
            unique: vec![("nickname".into(), "x".into())],
        };
        assert!(op_from_wire(op).is_err());
    }
}
