//! Runs every `sql/` pipeline, in order, on the demo data and checks that the results
//! make sense: the runner gets running gear.

use datafusion::arrow::util::pretty::pretty_format_batches;
use rankql::runner::{OutputFormat, Runner};

use crate::common::{demo_engine, repo_root};

async fn query(context: &datafusion::prelude::SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
    let text = pretty_format_batches(&batches).unwrap().to_string();
    text.lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_runs_on_the_demo_and_makes_sense() {
    let engine = demo_engine().await;
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut runner = Runner::new(&engine.context, OutputFormat::Csv, std::io::sink());
    runner
        .run_files(&files)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let context = &engine.context;

    // Runners are recommended running gear.
    let share = query(
        context,
        "SELECT avg(CASE WHEN p.category = u.favourite_category THEN 1.0 ELSE 0.0 END) \
         FROM recommendations r JOIN users u USING (user_id) JOIN products p USING (product_id) \
         WHERE r.source = 'personalised' AND u.favourite_category = 'running'",
    )
    .await;
    let share: f64 = share[0][0].parse().unwrap();
    assert!(
        share >= 0.8,
        "runners get running gear in {share} of their recommendations"
    );

    // Nothing already bought is recommended; every user gets five; cold-start users get popular items.
    let bought = query(
        context,
        "SELECT count(*) FROM recommendations r JOIN events e ON e.user_id = r.user_id AND e.product_id = r.product_id AND e.event_type = 'purchase'",
    )
    .await;
    assert_eq!(bought[0][0], "0");
    let per_user = query(context, "SELECT min(n), max(n), count(*) FROM (SELECT user_id, count(*) AS n FROM recommendations GROUP BY user_id)").await;
    assert_eq!(per_user[0], vec!["5", "5", "200"]);
    let cold = query(
        context,
        "SELECT DISTINCT source FROM recommendations WHERE user_id > 190",
    )
    .await;
    assert_eq!(cold, vec![vec!["popular".to_string()]]);

    // Probabilities per user sum to 1 over all candidates, so the top 5 hold at most 1.
    let p = query(context, "SELECT max(s) FROM (SELECT user_id, sum(probability) AS s FROM recommendations GROUP BY user_id)").await;
    assert!(p[0][0].parse::<f64>().unwrap() <= 1.0 + 1e-9);

    // Search finds the query's category first.
    let top = query(
        context,
        "SELECT q.query_id, p.category FROM search_results r JOIN search_queries q USING (query_id) JOIN products p USING (product_id) WHERE r.rnk = 1 ORDER BY q.query_id",
    )
    .await;
    let categories: Vec<&str> = top.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(categories, vec!["running", "coffee", "audio"]);

    // The same needs asked in Chinese find the same categories through e5: all of its top 3.
    let top = query(
        context,
        "SELECT r.query_id, p.category FROM search_results_zh r JOIN products p USING (product_id) WHERE r.rnk <= 3 ORDER BY r.query_id, r.rnk",
    )
    .await;
    let categories: Vec<&str> = top.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        categories,
        [["running"; 3], ["coffee"; 3], ["audio"; 3]].concat()
    );

    // Co-visitation neighbours of a running product are mostly running products.
    let same = query(
        context,
        "SELECT avg(CASE WHEN pi.category = pn.category THEN 1.0 ELSE 0.0 END) FROM item_neighbours n \
         JOIN products pi ON pi.product_id = n.item JOIN products pn ON pn.product_id = n.neighbour WHERE n.rnk <= 10",
    )
    .await;
    assert!(same[0][0].parse::<f64>().unwrap() > 0.7, "{same:?}");

    // Every product has 10 content neighbours (`nearest`), never itself, mostly its category.
    let content = query(
        context,
        "SELECT min(n), max(n), sum(self), avg(same) FROM (SELECT n.item, count(*) AS n, \
         sum(CASE WHEN n.item = n.neighbour THEN 1 ELSE 0 END) AS self, \
         avg(CASE WHEN pi.category = pn.category THEN 1.0 ELSE 0.0 END) AS same \
         FROM item_content_neighbours n JOIN products pi ON pi.product_id = n.item \
         JOIN products pn ON pn.product_id = n.neighbour GROUP BY n.item)",
    )
    .await;
    assert_eq!(content[0][..3], ["10", "10", "0"], "{content:?}");
    assert!(content[0][3].parse::<f64>().unwrap() > 0.7, "{content:?}");

    // Ads respect the frequency cap: user 1 has seen campaign 3 twice.
    let capped = query(
        context,
        "SELECT count(*) FROM ad_rankings WHERE user_id = 1 AND campaign_id = 3",
    )
    .await;
    assert_eq!(capped[0][0], "0");

    // The burst of clicks on product 17 puts it at the top of the Thompson re-ranking.
    let bandit = query(
        context,
        "SELECT product_id FROM bandit_ranking ORDER BY thompson_score DESC LIMIT 1",
    )
    .await;
    assert_eq!(bandit[0][0], "17");

    // The A/B report has both arms with confidence intervals.
    let arms = query(context, "SELECT count(*), min(ctr_ci95) > 0 FROM ab_report").await;
    assert_eq!(arms[0], vec!["2", "true"]);

    // Explanations: every recommendation has reasons whose shares add up to its score, at
    // most three named ones plus the rest; the top reason of a runner's pick is running gear.
    for table in ["recommendation_reasons", "item_item_reasons"] {
        let sums = query(
            context,
            &format!(
                "SELECT count(*), max(abs(total - score)), max(reasons) FROM (SELECT user_id, \
                 product_id, score, sum(share) AS total, count(*) AS reasons FROM {table} \
                 GROUP BY user_id, product_id, score)"
            ),
        )
        .await;
        assert!(
            sums[0][0].parse::<u64>().unwrap() >= 500,
            "{table}: {sums:?}"
        );
        assert!(
            sums[0][1].parse::<f64>().unwrap() < 1e-4,
            "{table}: {sums:?}"
        );
        assert_eq!(sums[0][2], "4", "{table}: {sums:?}");
    }
    let top_reason = query(
        context,
        "SELECT avg(CASE WHEN p.category = 'running' THEN 1.0 ELSE 0.0 END) \
         FROM recommendation_reasons r JOIN users u USING (user_id) \
         JOIN products p ON p.product_id = r.because_of \
         WHERE r.reason = 1 AND u.favourite_category = 'running'",
    )
    .await;
    assert!(
        top_reason[0][0].parse::<f64>().unwrap() > 0.7,
        "{top_reason:?}"
    );
}
