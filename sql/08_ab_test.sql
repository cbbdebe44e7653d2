-- A/B testing: deterministic arms per user and a report of CTR and conversion per arm,
-- with 95% normal-approximation confidence intervals.

CREATE OR REPLACE TABLE ab_assignments AS
SELECT user_id, ab_bucket(user_id, 'ranker-v2', '[50, 50]') AS arm FROM users;

CREATE OR REPLACE TABLE ab_report AS
WITH per_arm AS (
  SELECT a.arm,
         count(DISTINCT a.user_id) AS users,
         CAST(sum(CASE WHEN e.event_type = 'view' THEN 1 ELSE 0 END) AS DOUBLE) AS views,
         CAST(sum(CASE WHEN e.event_type = 'click' THEN 1 ELSE 0 END) AS DOUBLE) AS clicks,
         CAST(sum(CASE WHEN e.event_type = 'purchase' THEN 1 ELSE 0 END) AS DOUBLE) AS purchases
  FROM ab_assignments a JOIN events e USING (user_id)
  GROUP BY a.arm
)
SELECT arm, users, views, clicks, purchases,
       clicks / views AS ctr,
       1.96 * sqrt((clicks / views) * (1 - clicks / views) / views) AS ctr_ci95,
       purchases / clicks AS conversion,
       1.96 * sqrt((purchases / clicks) * (1 - purchases / clicks) / clicks) AS conversion_ci95
FROM per_arm;

SELECT arm, users, round(ctr, 4) AS ctr, round(ctr_ci95, 4) AS "± ctr", round(conversion, 4) AS conversion, round(conversion_ci95, 4) AS "± conversion"
FROM ab_report ORDER BY arm;
