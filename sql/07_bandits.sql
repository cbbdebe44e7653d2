-- Real-time re-ranking: live click/impression counts feed Thompson sampling and UCB,
-- which re-rank a category's top candidates. INSERTing new events changes the counts,
-- and the next query re-ranks on them.

CREATE OR REPLACE TABLE live_counts AS
SELECT product_id,
       CAST(sum(CASE WHEN event_type = 'click' THEN 1 ELSE 0 END) AS DOUBLE) AS clicks,
       CAST(sum(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS DOUBLE) AS impressions
FROM events GROUP BY product_id;

-- A burst of fresh clicks on product 17 arrives.
INSERT INTO live_counts VALUES (17, 40.0, 40.0);

CREATE OR REPLACE TABLE bandit_ranking AS
WITH counts AS (
  SELECT product_id, sum(clicks) AS clicks, sum(impressions) AS impressions
  FROM live_counts GROUP BY product_id
),
candidates AS (
  SELECT c.product_id, c.clicks, c.impressions
  FROM counts c JOIN products p USING (product_id)
  WHERE p.category = 'running'
)
SELECT product_id, clicks, impressions,
       thompson(clicks, impressions - clicks, product_id * 1000003 + 20261130) AS thompson_score,
       ucb(clicks, impressions, sum(impressions) OVER ()) AS ucb_score,
       epsilon_greedy(clicks / impressions, 0.1, product_id + 20261130) AS egreedy_score
FROM candidates;

SELECT product_id, clicks, impressions, round(thompson_score, 3) AS thompson, round(ucb_score, 3) AS ucb
FROM bandit_ranking ORDER BY thompson_score DESC LIMIT 5;
