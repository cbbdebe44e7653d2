//! `rankql sql` and `rankql run` as a user runs them.

use std::process::Command;

use crate::common::{models_dir, repo_root};

/// Runs the binary in the repository root, with a fresh data directory unless the
/// arguments name one.
fn rankql(args: &[&str]) -> (bool, String, String) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_rankql"))
        .args(args)
        .env("RANKQL_DATA_DIR", data_dir.path())
        .env("RANKQL_MODELS", models_dir())
        .env("RANKQL_LOG", "warn")
        .current_dir(repo_root())
        .output()
        .expect("rankql runs");
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
fn serve_refuses_a_public_address() {
    let (ok, _, err) = rankql(&["serve", "--host", "0.0.0.0", "--port", "0"]);
    assert!(!ok);
    assert!(err.contains("refusing to listen on 0.0.0.0"), "{err}");
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
