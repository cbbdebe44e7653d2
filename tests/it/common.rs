//! Shared test fixtures: engines, a server on an ephemeral port, clients.

use std::path::PathBuf;

use rankql::engine::{Engine, EngineOptions};
use rankql::server::ServerOptions;
use rankql_udfs::embed::EmbedOptions;
use tokio::sync::oneshot;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Decides what a test does when something it needs is missing (`what`, with `fix`
/// saying how to get it): under CI (`CI` set) the test fails, so a green run cannot hide
/// an unrun test; elsewhere it prints a visible SKIPPED line and returns `false`. Every
/// skip is also appended to `$RANKQL_SKIP_LOG`, which `.ci/run` prints in its summary.
pub fn missing_dependency(test: &str, what: &str, fix: &str) {
    let line = format!("{test}: {what} is missing ({fix})");
    if std::env::var_os("CI").is_some() {
        panic!("CI requires every test to run, but {line}");
    }
    eprintln!("SKIPPED: {line}");
    record_skip(&line);
}

/// The folder `../shared` beside the repository (real data and BI traces), if present.
/// A user's fresh clone has none, so its absence is never a failure, not even in CI; it
/// is recorded in `$RANKQL_SKIP_LOG` so the CI summary shows the test did not run.
pub fn shared_dir(test: &str, sub: &str) -> Option<PathBuf> {
    let dir = repo_root().join("..").join("shared").join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    not_run_here(
        test,
        &format!("../shared/{sub} is absent (it is not part of the repository)"),
    );
    None
}

/// A test that cannot run on this machine for a reason no install fixes (e.g. it has no
/// network address): a visible skip, recorded for the CI summary, never a failure.
pub fn not_run_here(test: &str, why: &str) {
    let line = format!("{test}: {why}");
    eprintln!("SKIPPED: {line}");
    record_skip(&line);
}

fn record_skip(line: &str) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("RANKQL_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Whether `program` runs with `args` and exits successfully.
pub fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
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
        memory_limit: None,
        table_cache: 256 << 20,
        cluster: None,
    }
}

/// An in-process engine with the demo data.
pub async fn demo_engine() -> Engine {
    Engine::new(options(true)).await.expect("engine builds")
}

/// A server on an ephemeral loopback port, stopped when dropped (and its data directory
/// released, so a test can start another server on it at once).
pub struct TestServer {
    /// The port it listens on.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a demo server on its own runtime, built as `rankql serve` builds it.
pub async fn start_server() -> TestServer {
    start_server_with(options(true)).await
}

/// Starts a server with `options` on its own runtime.
pub async fn start_server_with(options: EngineOptions) -> TestServer {
    start_server_on("127.0.0.1", options, ServerOptions::default()).await
}

/// Starts a server on `host` with engine and server options, on its own runtime.
pub async fn start_server_on(
    host: &str,
    options: EngineOptions,
    server: ServerOptions,
) -> TestServer {
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, port) = oneshot::channel::<u16>();
    let host = host.to_string();
    let thread = std::thread::spawn(move || {
        rankql::server::runtime()
            .expect("runtime")
            .block_on(async move {
                let listener = rankql::server::bind(&host, 0).await.expect("bind");
                let engine = Engine::new(options).await.expect("engine builds");
                ready
                    .send(listener.local_addr().expect("address").port())
                    .expect("test waits");
                let shutdown = async {
                    let _ = stopped.await;
                };
                rankql::server::serve(
                    listener,
                    engine.context.clone(),
                    engine.roles.clone(),
                    server,
                    shutdown,
                )
                .await
                .expect("serve");
            });
    });
    TestServer {
        port: port.await.expect("server starts"),
        stop: Some(stop),
        thread: Some(thread),
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

/// Adds a user who can log in to the data directory `dir` (as `rankql user add` does).
pub fn add_user(dir: &std::path::Path, name: &str, password: &str, superuser: bool) {
    rankql::server::roles::RoleCatalog::open(Some(dir))
        .expect("role catalog opens")
        .create_role(
            name,
            &rankql::server::roles::RoleOptions {
                superuser: Some(superuser),
                login: Some(true),
                password: Some(Some(password.to_string())),
            },
            true,
        )
        .expect("user added");
}

/// Connects as `user` with `password` to `host:port`.
pub async fn connect_as(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host={host} port={port} user={user} password={password} dbname=rankql"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Logs in on loopback as `user`; panics if the login fails.
pub async fn login(port: u16, user: &str, password: &str) -> tokio_postgres::Client {
    connect_as("127.0.0.1", port, user, password)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
}

/// Runs a Python script off the runtime's threads (they serve the server under test) and
/// returns its standard output, failing the test with its output when it fails.
pub async fn run_python(script: String) -> String {
    run_client("python3", vec!["-c".into(), script], Vec::new()).await
}

/// Runs a client program (`program args…`, with `env` set) off the runtime's threads and
/// returns its standard output, failing the test with its output when it fails.
pub async fn run_client(
    program: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(&args)
            .envs(env)
            .output()
    })
    .await
    .expect("client task")
    .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{program}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
