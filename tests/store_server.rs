//! `drawdown store` and the remote backend (`store::RemoteStore`): the store conformance suite
//! through a real HTTP server over a real embedded store, and the server's refusals.

use std::net::SocketAddr;
use std::sync::Arc;
use store::conformance::Harness;
use store::{EmbeddedStore, RemoteStore, Store, Table};

/// A store server on its own thread and runtime over a fresh embedded store; stopped on drop.
struct Remote {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Harness for Remote {
    type Backend = RemoteStore;

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: store::SharedStore = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = drawdown::store_server::router(store);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Remote { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    fn open(&self) -> RemoteStore {
        RemoteStore::connect(&format!("http://{}", self.addr)).expect("client")
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

store::store_conformance_tests!(Remote);

#[tokio::test]
async fn a_store_server_that_is_gone_is_a_backend_error_not_a_hang() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let client = RemoteStore::connect(&format!("http://{addr}")).expect("client");
    let error = client.get(Table::Meta, "x").await.expect_err("nobody listens");
    assert!(matches!(error, store::StoreError::Backend(_)), "{error}");
}

#[test]
fn a_call_that_is_not_one_is_refused_with_400() {
    let h = Remote::new();
    let url = format!("http://{}{}", h.addr, store::remote::PATH);
    match ureq::post(&url).send_string("{\"call\":\"drop_everything\"}") {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("expected a 400, got {other:?}"),
    }
}
