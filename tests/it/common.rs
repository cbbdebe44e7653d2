//! Shared test fixtures: engines, a server on an ephemeral port, clients.

use std::path::PathBuf;

use rankql::engine::{Engine, EngineOptions};
use rankql_udfs::embed::EmbedOptions;
use tokio::sync::oneshot;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The models installed by `python3 models/fetch.py`; panics with the fix when missing.
pub fn models_dir() -> PathBuf {
    let dir = repo_root().join("models").join("cache");
    assert!(
        dir.join("minilm").join("model.onnx").is_file(),
        "models are not installed in {}: run `python3 models/fetch.py` first",
        dir.display()
    );
    dir
}

/// Engine options with the demo data and the installed models.
pub fn options(demo: bool) -> EngineOptions {
    EngineOptions {
        models: EmbedOptions::new(models_dir()),
        data_dir: None,
        demo,
        writer: Default::default(),
    }
}

/// An in-process engine with the demo data.
pub async fn demo_engine() -> Engine {
    Engine::new(options(true)).await.expect("engine builds")
}

/// A server on an ephemeral loopback port, stopped when dropped.
pub struct TestServer {
    /// The port it listens on.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a demo server on its own runtime, built as `rankql serve` builds it.
pub async fn start_server() -> TestServer {
    start_server_with(options(true)).await
}

/// Starts a server with `options` on its own runtime.
pub async fn start_server_with(options: EngineOptions) -> TestServer {
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, port) = oneshot::channel::<u16>();
    std::thread::spawn(move || {
        rankql::server::runtime()
            .expect("runtime")
            .block_on(async move {
                let listener = rankql::server::bind("127.0.0.1", 0).await.expect("bind");
                let engine = Engine::new(options).await.expect("engine builds");
                ready
                    .send(listener.local_addr().expect("address").port())
                    .expect("test waits");
                let shutdown = async {
                    let _ = stopped.await;
                };
                rankql::server::serve(listener, engine.context.clone(), shutdown)
                    .await
                    .expect("serve");
            });
    });
    TestServer {
        port: port.await.expect("server starts"),
        stop: Some(stop),
    }
}

/// A tokio-postgres client connected to `port`.
pub async fn connect(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=rankql dbname=rankql"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
