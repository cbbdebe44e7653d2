//! Replays the catalog SQL of psql, DBeaver, Metabase, Grafana and other clients
//! (`../shared/bi-traces`, not part of the repository) against the server. Skipped when
//! the folder is absent. Reports, per tool, how many statements succeed; fails if a core
//! statements that work today stop working.

use crate::common::{connect, start_server};

fn statements(text: &str) -> Vec<String> {
    text.split("\n-- next")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|s| s.trim().trim_end_matches(';').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_bi_tool_traces() {
    let Some(dir) = crate::common::shared_dir("replay_bi_tool_traces", "bi-traces") else {
        return;
    };
    let server = start_server().await;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "sql"));
    files.sort();
    let (mut passed, mut total) = (0, 0);
    for file in files {
        let client = connect(server.port).await;
        let text = std::fs::read_to_string(&file).unwrap();
        let mut failures = Vec::new();
        let list = statements(&text);
        for sql in &list {
            match client.simple_query(sql).await {
                Ok(_) => passed += 1,
                Err(e) => failures.push(format!(
                    "{}: {}",
                    sql.lines().next().unwrap_or(""),
                    e.as_db_error()
                        .map_or(e.to_string(), |d| d.message().to_string())
                )),
            }
        }
        total += list.len();
        eprintln!(
            "{}: {}/{} statements ok",
            file.file_name().unwrap().to_string_lossy(),
            list.len() - failures.len(),
            list.len()
        );
        for failure in failures.iter().take(3) {
            eprintln!("    {}", failure.chars().take(200).collect::<String>());
        }
    }
    eprintln!("BI traces: {passed}/{total} statements ok");
    // 275 of 283 answer today; fail on a regression, not on the gap.
    assert!(
        passed >= 275,
        "BI-trace compatibility regressed: {passed}/{total} (275 passed when this floor was set)"
    );
}
