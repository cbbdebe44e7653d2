-- Diginetica sample: session-based next-item prediction, in rankql SQL.
-- Protocol: a time split, as the published session-based evaluations do: the test
-- sessions are those that start in the last 7 days of the data, and the models learn only
-- from sessions that start before that. In every test session of two or more views the
-- last view is held out and predicted from the view before it. Recall@20 and MRR@20 of
-- the held-out item, for popularity and for item co-visitation from the session's last
-- seen item. Neither model has a tuned setting (the weighting is fixed below).
--
-- Run: python3 sql/eval/fetch_data.py && rankql run --in-memory sql/eval/diginetica.sql
-- (needs ../shared/data; fetch_data.py says so when it is absent)

CREATE EXTERNAL TABLE dg_views (session_id BIGINT, item_id BIGINT, timeframe BIGINT, eventdate VARCHAR)
STORED AS CSV LOCATION 'eval-data/diginetica/views.csv' OPTIONS ('format.has_header' 'true');

CREATE OR REPLACE TABLE dg_sessions AS
SELECT session_id, min(CAST(eventdate AS DATE)) AS day FROM dg_views GROUP BY session_id;
CREATE OR REPLACE TABLE dg_period AS
SELECT CAST(max(day) - INTERVAL '6 days' AS DATE) AS test_start FROM dg_sessions;

CREATE OR REPLACE TABLE dg_ordered AS
SELECT v.session_id, v.item_id, s.day >= p.test_start AS in_test_period,
       row_number() OVER (PARTITION BY v.session_id ORDER BY v.timeframe, v.item_id) AS position,
       count(*) OVER (PARTITION BY v.session_id) AS length
FROM dg_views v JOIN dg_sessions s ON s.session_id = v.session_id CROSS JOIN dg_period p;

-- What the models may learn from: every view of the sessions before the test period.
CREATE OR REPLACE TABLE dg_train AS
SELECT session_id, item_id, position FROM dg_ordered WHERE NOT in_test_period;
-- The held-out last view of each test session, and the view before it.
CREATE OR REPLACE TABLE dg_test AS
SELECT session_id, item_id AS target FROM dg_ordered
WHERE in_test_period AND length >= 2 AND position = length;
CREATE OR REPLACE TABLE dg_last_seen AS
SELECT session_id, item_id AS last_item FROM dg_ordered
WHERE in_test_period AND length >= 2 AND position = length - 1;

-- Popularity: the 20 most viewed items.
CREATE OR REPLACE TABLE dg_popular AS
SELECT item_id, row_number() OVER (ORDER BY n DESC, item_id) AS rank
FROM (SELECT item_id, count(*) AS n FROM dg_train GROUP BY item_id)
ORDER BY rank LIMIT 20;

-- Co-visitation: items viewed in the same session, weighted by closeness in the session
-- (1 / distance), normalised by the square root of both items' view counts.
CREATE OR REPLACE TABLE dg_counts AS SELECT item_id, count(*) AS n FROM dg_train GROUP BY item_id;
CREATE OR REPLACE TABLE dg_covisits AS
SELECT a.item_id AS item, b.item_id AS neighbour,
       sum(1.0 / abs(a.position - b.position)) / sqrt(CAST(ca.n AS DOUBLE) * CAST(cb.n AS DOUBLE)) AS weight
FROM dg_train a
JOIN dg_train b ON a.session_id = b.session_id AND a.position <> b.position AND a.item_id <> b.item_id
JOIN dg_counts ca ON ca.item_id = a.item_id
JOIN dg_counts cb ON cb.item_id = b.item_id
GROUP BY a.item_id, b.item_id, ca.n, cb.n;

-- Co-visitation candidates first; popularity fills the list to 20.
CREATE OR REPLACE TABLE dg_recs AS
SELECT 'popularity' AS method, t.session_id, p.item_id, p.rank
FROM dg_test t CROSS JOIN dg_popular p
UNION ALL
SELECT 'co-visitation + popularity fill', session_id, item_id, rank FROM (
  SELECT session_id, item_id, row_number() OVER (PARTITION BY session_id ORDER BY tier, score DESC, item_id) AS rank
  FROM (
    SELECT l.session_id, c.neighbour AS item_id, 0 AS tier, c.weight AS score
    FROM dg_last_seen l JOIN dg_covisits c ON c.item = l.last_item
    UNION ALL
    SELECT l.session_id, p.item_id, 1, -CAST(p.rank AS DOUBLE)
    FROM dg_last_seen l CROSS JOIN dg_popular p
  )
) WHERE rank <= 20;

SELECT r.method,
       round(CAST(count(h.rank) AS DOUBLE) / max(t.sessions), 4) AS "Recall@20",
       round(sum(coalesce(1.0 / h.rank, 0)) / max(t.sessions), 4) AS "MRR@20",
       max(t.sessions) AS "test sessions",
       max(n.sessions) AS "training sessions"
FROM (SELECT DISTINCT method FROM dg_recs) r
CROSS JOIN (SELECT count(*) AS sessions FROM dg_test) t
CROSS JOIN (SELECT count(DISTINCT session_id) AS sessions FROM dg_train) n
LEFT JOIN (
  SELECT x.method, x.session_id, min(x.rank) AS rank
  FROM dg_recs x JOIN dg_test y ON y.session_id = x.session_id AND y.target = x.item_id
  GROUP BY x.method, x.session_id
) h ON h.method = r.method
GROUP BY r.method
ORDER BY "MRR@20";
