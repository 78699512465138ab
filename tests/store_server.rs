//! `drawdown store` and the remote backend (`store::RemoteStore`): the store conformance suite
//! through a real HTTP server over a real embedded store (each `open` restarts the server over
//! the same directory, so "survives reopen" crosses a server restart), and the server's
//! refusals.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::conformance::Harness;
use store::{EmbeddedStore, RemoteStore, Store, StoreError, Table};

/// A store server on its own thread and runtime over `dir`'s embedded store.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(dir: &std::path::Path, token: Option<&str>) -> Self {
        let store: store::SharedStore = Arc::new(EmbeddedStore::open(dir).expect("store"));
        let live: store::SharedStore = Arc::new(EmbeddedStore::open(dir.join("live")).expect("live store"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let app = drawdown::store_server::router(store, live, token);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Server { addr, stop: Some(stop), thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fresh directory; each `open` stops the running server and starts another over it.
struct Remote {
    server: Mutex<Option<Server>>,
    dir: tempfile::TempDir,
}

impl Harness for Remote {
    type Backend = RemoteStore;

    fn new() -> Self {
        Remote { server: Mutex::new(None), dir: tempfile::tempdir().expect("temp dir") }
    }

    fn open(&self) -> RemoteStore {
        let mut server = self.server.lock().expect("server");
        drop(server.take());
        let started = Server::start(self.dir.path(), None);
        let client = RemoteStore::with_token(&started.url(), None).expect("client");
        *server = Some(started);
        client
    }
}

store::store_conformance_tests!(Remote);

#[tokio::test]
async fn a_store_server_that_is_gone_or_silent_is_a_backend_error_not_a_hang() {
    // Nobody listens.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let client = RemoteStore::with_token(&format!("http://{gone}"), None).expect("client");
    let answer = tokio::time::timeout(Duration::from_secs(10), client.get(Table::Meta, "x")).await;
    let error = answer.expect("no hang").expect_err("nobody listens");
    assert!(matches!(error, StoreError::Backend(_)), "{error}");
}

#[test]
fn a_call_that_is_not_one_is_refused_with_400() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None);
    let url = format!("{}{}", server.url(), store::remote::PATH);
    match ureq::post(&url).send_string("{\"call\":\"drop_everything\"}") {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_server_answers_only_calls_that_carry_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = tokio::task::block_in_place(|| Server::start(dir.path(), Some("s3cret")));
    let without = RemoteStore::with_token(&server.url(), None).expect("client");
    let error = without.get(Table::Meta, "x").await.expect_err("refused");
    assert!(error.to_string().contains("401"), "{error}");
    let wrong = RemoteStore::with_token(&server.url(), Some("guess")).expect("client");
    assert!(wrong.get(Table::Meta, "x").await.is_err());
    let with = RemoteStore::with_token(&server.url(), Some("s3cret")).expect("client");
    assert_eq!(with.get(Table::Meta, "x").await.expect("answered"), None);
    tokio::task::block_in_place(|| drop(server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_environment_has_its_own_store_under_live() {
    use store::{Op, Store, Table};
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None);
    let test = RemoteStore::with_token(&server.url(), None).expect("client");
    let live = RemoteStore::with_token(&format!("{}/live", server.url()), None).expect("client");
    let put = |n: i64| Op::put_doc(Table::Meta, "k", &serde_json::json!({ "n": n })).expect("op");
    test.write(vec![put(1)]).await.expect("write");
    assert!(live.get(Table::Meta, "k").await.expect("read").is_none(), "nothing of test's in live");
    live.write(vec![put(2)]).await.expect("write");
    let doc = |r: Option<store::Record>| {
        serde_json::from_slice::<serde_json::Value>(&r.expect("record").doc).expect("json")
    };
    assert_eq!(doc(test.get(Table::Meta, "k").await.expect("read"))["n"], 1);
    assert_eq!(doc(live.get(Table::Meta, "k").await.expect("read"))["n"], 2);
}
