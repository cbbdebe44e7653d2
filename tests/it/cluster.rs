//! A local Ballista cluster started from the rankql binary (one scheduler, two executor
//! processes): the `sql/` pipelines, the MovieLens evaluation and the served demo give
//! the same results as one process; a killed executor and a scheduler that is down give
//! an answer or a clear error, never a hang.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    connect, missing_dependency, models_dir, options, repo_root, start_server_with,
};

/// How long a node may take to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the engine logs (at debug level) for every statement it sends to the cluster.
const SENT_TO_CLUSTER: &str = "running on the cluster";

/// Scheduler and executor processes of the rankql binary, killed when dropped.
struct LocalCluster {
    address: String,
    scheduler: Child,
    executors: Vec<Child>,
    logs: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts a scheduler and `executors` executors of one task slot each.
    fn start(executors: usize) -> Self {
        let logs = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let scheduler = spawn(
            &["scheduler", "--port", &port.to_string()],
            &logs.path().join("scheduler.log"),
        );
        wait_for_port(port);
        let mut cluster = Self {
            address,
            scheduler,
            executors: Vec::new(),
            logs,
        };
        for index in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let work = cluster.logs.path().join(format!("executor-{index}"));
            std::fs::create_dir_all(&work).expect("work dir");
            let child = spawn(
                &[
                    "executor",
                    "--scheduler",
                    &cluster.address,
                    "--port",
                    &flight.to_string(),
                    "--grpc-port",
                    &grpc.to_string(),
                    "--concurrency",
                    "1",
                    "--work-dir",
                    &work.to_string_lossy(),
                ],
                &cluster.logs.path().join(format!("executor-{index}.log")),
            );
            cluster.executors.push(child);
            wait_for_port(flight);
        }
        cluster
    }

    /// How many tasks the executors have started.
    fn executed_tasks(&self) -> usize {
        (0..self.executors.len().max(2))
            .map(|index| self.logs.path().join(format!("executor-{index}.log")))
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|log| log.matches("Execute task").count())
            .sum()
    }

    /// The nodes' logs, for a failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.logs.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        entries.sort();
        for path in entries {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("--- {} ---\n", path.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < START_TIMEOUT,
            "nothing listens on port {port} after {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the binary with `args` in the repository root, its output in `log`.
fn spawn(args: &[&str], log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_rankql"))
        .args(args)
        .env("RANKQL_MODELS", models_dir())
        .env("RANKQL_LOG", "info")
        .current_dir(repo_root())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("rankql starts")
}

/// Runs the binary with `args` in the repository root, logging what goes to the cluster.
fn rankql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rankql"))
        .args(args)
        .env("RANKQL_MODELS", models_dir())
        .env("RANKQL_LOG", "warn,rankql::cluster=debug")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("rankql runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that two runs printed the same rows: the same lines, where numbers may differ
/// in their last digits (sums over differently partitioned rows round differently).
fn assert_same_output(local: &str, cluster: &str) {
    let (local, cluster): (Vec<&str>, Vec<&str>) =
        (local.lines().collect(), cluster.lines().collect());
    assert_eq!(local.len(), cluster.len(), "different row counts");
    for (a, b) in local.iter().zip(&cluster) {
        let (fields_a, fields_b): (Vec<&str>, Vec<&str>) =
            (a.split(',').collect(), b.split(',').collect());
        let same = fields_a.len() == fields_b.len()
            && fields_a.iter().zip(&fields_b).all(|(x, y)| {
                x == y
                    || matches!((x.parse::<f64>(), y.parse::<f64>()),
                        (Ok(x), Ok(y)) if (x - y).abs() <= 1e-6 * x.abs().max(1.0))
            });
        assert!(
            same,
            "one process printed\n  {a}\nthe cluster printed\n  {b}"
        );
    }
}

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("sql dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

#[test]
fn pipelines_and_movielens_give_the_same_results_on_a_cluster() {
    let ratings = repo_root().join("eval-data/ml-100k/ratings.csv");
    let movielens = ratings.is_file();
    if !movielens {
        missing_dependency(
            "cluster MovieLens evaluation",
            "eval-data/ml-100k",
            "run `python3 sql/eval/fetch_data.py`",
        );
    }
    let cluster = LocalCluster::start(2);
    let pipelines: Vec<String> = sql_files(&repo_root().join("sql"))
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut scripts = vec![pipelines];
    if movielens {
        scripts.push(vec!["sql/eval/movielens.sql".to_string()]);
    }
    for files in scripts {
        let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let run = |dir: &Path, cluster: Option<&str>| {
            let mut args = vec!["run", "--demo", "--format", "csv", "--data-dir"];
            let dir = dir.to_string_lossy().into_owned();
            args.push(&dir);
            if let Some(address) = cluster {
                args.extend(["--cluster", address]);
            }
            args.extend(files.iter().map(String::as_str));
            rankql(&args)
        };
        let local = run(here.path(), None);
        assert!(local.status.success(), "{}", text(&local.stderr));
        let remote = run(there.path(), Some(&cluster.address));
        assert!(
            remote.status.success(),
            "{}\n{}",
            text(&remote.stderr),
            cluster.logs()
        );
        assert_same_output(&text(&local.stdout), &text(&remote.stdout));
        let sent = text(&remote.stderr).matches(SENT_TO_CLUSTER).count();
        assert!(
            sent >= 10,
            "only {sent} statements of {files:?} ran on the cluster"
        );
    }
}

#[test]
fn a_killed_executor_gives_an_answer_or_an_error_never_a_hang() {
    let mut cluster = LocalCluster::start(2);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_string_lossy().into_owned();
    let prepare = rankql(&[
        "sql",
        "--data-dir",
        &data_dir,
        "CREATE TABLE texts AS SELECT 'product number ' || value || ' in size ' || (value % 47) AS t FROM generate_series(1, 4000)",
    ]);
    assert!(prepare.status.success(), "{}", text(&prepare.stderr));
    let query = Command::new(env!("CARGO_BIN_EXE_rankql"))
        .args([
            "sql",
            "--data-dir",
            &data_dir,
            "--cluster",
            &cluster.address,
            "SELECT count(embed(t)) AS embedded FROM texts",
        ])
        .env("RANKQL_MODELS", models_dir())
        .env("RANKQL_LOG", "warn")
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rankql runs");
    std::thread::sleep(Duration::from_secs(4));
    let mut victim = cluster.executors.remove(0);
    victim.kill().expect("kill an executor");
    let _ = victim.wait();
    let started = Instant::now();
    let output = wait_with_timeout(query, Duration::from_secs(240));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    eprintln!(
        "after the kill, the query ended in {:?}: {stdout}{stderr}",
        started.elapsed()
    );
    if output.status.success() {
        assert!(
            stdout.contains("4000"),
            "a retried query lost rows: {stdout}"
        );
    } else {
        assert!(
            stderr.contains("error"),
            "the failure says nothing: {stderr}"
        );
    }
}

/// Waits for `child`, killing it (and failing the test) after `limit`.
fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the query still ran {limit:?} after an executor was killed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_scheduler_that_is_down_is_a_clear_error_at_start() {
    let port = free_port();
    let output = rankql(&[
        "sql",
        "--in-memory",
        "--cluster",
        &format!("127.0.0.1:{port}"),
        "SELECT 1",
    ]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot reach the Ballista scheduler at 127.0.0.1:"),
        "{stderr}"
    );
    let output = rankql(&["sql", "--in-memory", "--cluster", "nowhere", "SELECT 1"]);
    assert!(text(&output.stderr).contains("HOST:PORT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_demo_search_runs_on_the_cluster() {
    let cluster = LocalCluster::start(2);
    let search = "SELECT product_id, title, round(cosine(embed(title || ' ' || description), \
                  embed('shoes for my first marathon')), 4) AS score \
                  FROM products ORDER BY score DESC, product_id LIMIT 5";
    let mut answers = Vec::new();
    for cluster in [None, Some(cluster.address.clone())] {
        let server = start_server_with(rankql::engine::EngineOptions {
            cluster,
            ..options(true)
        })
        .await;
        let client = connect(server.port).await;
        let rows = client.query(search, &[]).await.expect("search runs");
        let rows: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // Catalog queries stay local and still work.
        let tables = client
            .query(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'products'",
                &[],
            )
            .await
            .expect("catalog query");
        assert_eq!(tables[0].get::<_, i64>(0), 1);
        answers.push(rows);
    }
    assert_eq!(answers[0].len(), 5);
    assert_eq!(answers[0], answers[1]);
    let tasks = cluster.executed_tasks();
    assert!(tasks > 0, "no executor ran a task:\n{}", cluster.logs());
}
