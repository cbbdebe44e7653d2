//! `rankql sql`, `rankql run`, `rankql user add` and `rankql serve`'s start-up checks,
//! as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{models_dir, repo_root};

/// Runs the binary in the repository root, with a fresh data directory unless the
/// arguments name one.
fn rankql(args: &[&str]) -> (bool, String, String) {
    rankql_with_input(args, "")
}

/// [`rankql`] with `input` on standard input.
fn rankql_with_input(args: &[&str], input: &str) -> (bool, String, String) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rankql"))
        .args(args)
        .env("RANKQL_DATA_DIR", data_dir.path())
        .env("RANKQL_MODELS", models_dir())
        .env("RANKQL_LOG", "warn")
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rankql runs");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = child.wait_with_output().expect("rankql finishes");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn sql_prints_an_aligned_table() {
    let (ok, out, err) = rankql(&[
        "sql",
        "--demo",
        "SELECT category, count(*) AS n FROM products GROUP BY category ORDER BY category LIMIT 2",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| category | n  |"), "{out}");
    assert!(out.contains("| audio    | 30 |"), "{out}");
    assert!(out.contains("(2 rows)"), "{out}");
}

#[test]
fn sql_prints_csv_and_json() {
    let (ok, out, _) = rankql(&["sql", "--format", "csv", "SELECT 1 AS a, 'x' AS b"]);
    assert!(ok);
    assert_eq!(out, "a,b\n1,x\n");
    let (ok, out, _) = rankql(&["sql", "--format", "json", "SELECT 1 AS a, 'x' AS b"]);
    assert!(ok);
    assert_eq!(out.trim(), r#"{"a":1,"b":"x"}"#);
}

#[test]
fn run_executes_files_in_order_and_reports_the_failing_line() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("1.sql");
    let second = dir.path().join("2.sql");
    std::fs::write(&first, "CREATE TABLE t AS SELECT 1 AS x;\n").unwrap();
    std::fs::write(
        &second,
        "-- uses t\nSELECT x FROM t;\n\nSELECT * FROM\n  missing_table;\nSELECT 'never runs';\n",
    )
    .unwrap();
    let (ok, out, err) = rankql(&[
        "run",
        "--format",
        "csv",
        first.to_str().unwrap(),
        second.to_str().unwrap(),
    ]);
    assert!(!ok, "must fail");
    assert!(out.contains("x\n1\n"), "{out}");
    assert!(!out.contains("never runs"));
    assert!(
        err.contains("2.sql:4") && err.contains("missing_table"),
        "{err}"
    );
}

#[test]
fn user_add_stores_a_secret_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let add = [
        "user",
        "add",
        "admin",
        "--superuser",
        "--password-stdin",
        "--data-dir",
        data,
    ];
    let (ok, out, err) = rankql_with_input(&add, "correct horse battery\n");
    assert!(ok, "{err}");
    assert!(out.contains("user admin added"), "{out}");
    let stored = std::fs::read_to_string(dir.path().join("roles.json")).unwrap();
    assert!(
        stored.contains("admin") && !stored.contains("correct horse"),
        "{stored}"
    );
    let (ok, _, err) = rankql_with_input(&add, "other\n");
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn serve_stops_on_tls_settings_that_cannot_work() {
    let (ok, _, err) = rankql(&["serve", "--port", "0", "--tls", "required"]);
    assert!(!ok);
    assert!(err.contains("--tls required needs --tls-cert"), "{err}");
    let (ok, _, err) = rankql(&[
        "serve",
        "--port",
        "0",
        "--tls-cert",
        "no-such-cert.pem",
        "--tls-key",
        "no-such-key.pem",
    ]);
    assert!(!ok, "no silent fall-back to plain text");
    assert!(err.contains("no-such-cert.pem"), "{err}");
}

#[test]
fn files_copied_into_the_data_dir_are_tables_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let copy = format!("COPY (SELECT 41 + 1 AS answer) TO '{data}/answers.parquet'");
    let (ok, _, err) = rankql(&["sql", "--data-dir", data, &copy]);
    assert!(ok, "{err}");
    let (ok, out, err) = rankql(&[
        "sql",
        "--data-dir",
        data,
        "--format",
        "csv",
        "SELECT answer FROM answers",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "answer\n42\n");
}
