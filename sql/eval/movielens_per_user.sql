-- MovieLens-100K, the per-user 75/25 protocol (as Cornac's published table, where BPR
-- reaches nDCG@10 0.442 and BiVAE 0.475): for every user, 25% of their ratings (chosen by
-- an MD5 hash of 'user:item', so the same on every run) are held out; every rating is a
-- positive. Each user's unrated items are ranked; nDCG@10 and Recall@10 averaged over users.
--
-- EASE's λ is chosen on a validation split carved from the training ratings the same way
-- (20% of each user's training ratings), then refit on all training ratings for the test.
--
-- Run: python3 sql/eval/fetch_data.py && rankql run --in-memory sql/eval/movielens_per_user.sql

CREATE EXTERNAL TABLE ml_ratings (user_id BIGINT, item_id BIGINT, rating BIGINT, ts BIGINT)
STORED AS CSV LOCATION 'eval-data/ml-100k/ratings.csv' OPTIONS ('format.has_header' 'true');

CREATE OR REPLACE TABLE pu_split AS
SELECT user_id, item_id,
       row_number() OVER (PARTITION BY user_id ORDER BY md5(CAST(user_id AS VARCHAR) || ':' || CAST(item_id AS VARCHAR) || ':75-25')) <=
       round(0.25 * count(*) OVER (PARTITION BY user_id)) AS held_out
FROM ml_ratings;

CREATE OR REPLACE TABLE pu_validation AS
SELECT user_id, item_id,
       row_number() OVER (PARTITION BY user_id ORDER BY md5(CAST(user_id AS VARCHAR) || ':' || CAST(item_id AS VARCHAR) || ':validation')) <=
       round(0.2 * count(*) OVER (PARTITION BY user_id)) AS held_out
FROM pu_split WHERE NOT held_out;

CREATE OR REPLACE TABLE pu_staged AS
SELECT 'test' AS stage, user_id, item_id, held_out FROM pu_split
UNION ALL
SELECT 'validation', user_id, item_id, held_out FROM pu_validation;

CREATE OR REPLACE TABLE pu_train AS SELECT stage, user_id, item_id FROM pu_staged WHERE NOT held_out;
CREATE OR REPLACE TABLE pu_test AS SELECT stage, user_id, item_id FROM pu_staged WHERE held_out;
CREATE OR REPLACE TABLE pu_users AS SELECT stage, user_id, count(*) AS n_test FROM pu_test GROUP BY stage, user_id;

CREATE OR REPLACE TABLE pu_lambdas AS SELECT * FROM (VALUES (100), (200), (400), (800), (1600)) AS l(lambda);

-- Popularity, the floor.
CREATE OR REPLACE TABLE pu_recs AS
SELECT 'popularity' AS method, '-' AS setting, stage, user_id, item_id, rank FROM (
  SELECT u.stage, u.user_id, p.item_id,
         row_number() OVER (PARTITION BY u.stage, u.user_id ORDER BY p.n DESC, p.item_id) AS rank
  FROM pu_users u
  JOIN (SELECT stage, item_id, count(*) AS n FROM pu_train GROUP BY stage, item_id) p ON p.stage = u.stage
  LEFT JOIN pu_train seen ON seen.stage = u.stage AND seen.user_id = u.user_id AND seen.item_id = p.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

-- EASE, every λ on validation.
CREATE OR REPLACE TABLE pu_ease_fits AS
SELECT t.stage, l.lambda,
       ease_fit(t.user_id, t.item_id, '{"top_k": 200, "lambda": ' || CAST(l.lambda AS VARCHAR) || '}') AS model
FROM pu_train t CROSS JOIN pu_lambdas l
WHERE t.stage = 'validation'
GROUP BY t.stage, l.lambda;

CREATE OR REPLACE VIEW pu_ease_recs AS
WITH model AS (
  SELECT stage, lambda, e['item'] AS item, e['neighbour'] AS neighbour, e['weight'] AS weight
  FROM (SELECT stage, lambda, unnest(model) AS e FROM pu_ease_fits)
), scores AS (
  SELECT m.stage, m.lambda, t.user_id, m.neighbour AS item_id, sum(m.weight) AS score
  FROM pu_train t JOIN model m ON m.stage = t.stage AND m.item = t.item_id
  GROUP BY m.stage, m.lambda, t.user_id, m.neighbour
)
SELECT 'EASE' AS method, 'lambda=' || CAST(lambda AS VARCHAR) AS setting, stage, user_id, item_id, rank FROM (
  SELECT s.stage, s.lambda, s.user_id, s.item_id,
         row_number() OVER (PARTITION BY s.stage, s.lambda, s.user_id ORDER BY s.score DESC, s.item_id) AS rank
  FROM scores s
  LEFT JOIN pu_train seen ON seen.stage = s.stage AND seen.user_id = s.user_id AND seen.item_id = s.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

INSERT INTO pu_recs SELECT * FROM pu_ease_recs;

CREATE OR REPLACE VIEW pu_metrics AS
WITH runs AS (SELECT DISTINCT method, setting, stage FROM pu_recs),
per_user AS (
  SELECT r.method, r.setting, u.stage, u.user_id, u.n_test,
         coalesce(sum(1.0 / log2(h.rank + 1.0)), 0) AS dcg, count(h.rank) AS hits
  FROM runs r JOIN pu_users u ON u.stage = r.stage
  LEFT JOIN (
    SELECT x.method, x.setting, x.stage, x.user_id, x.rank
    FROM pu_recs x JOIN pu_test t ON t.stage = x.stage AND t.user_id = x.user_id AND t.item_id = x.item_id
  ) h ON h.method = r.method AND h.setting = r.setting AND h.stage = u.stage AND h.user_id = u.user_id
  GROUP BY r.method, r.setting, u.stage, u.user_id, u.n_test
), ideal AS (
  SELECT u.n_test, sum(1.0 / log2(g.value + 1.0)) AS idcg
  FROM (SELECT DISTINCT n_test FROM pu_users) u JOIN generate_series(1, 10) g ON g.value <= u.n_test
  GROUP BY u.n_test
)
SELECT p.method, p.setting, p.stage, avg(p.dcg / i.idcg) AS ndcg,
       avg(CAST(p.hits AS DOUBLE) / p.n_test) AS recall, count(*) AS users
FROM per_user p JOIN ideal i ON i.n_test = p.n_test
GROUP BY p.method, p.setting, p.stage;

CREATE OR REPLACE TABLE pu_chosen AS
SELECT method, setting FROM (
  SELECT method, setting, row_number() OVER (PARTITION BY method ORDER BY ndcg DESC, setting) AS place
  FROM pu_metrics WHERE stage = 'validation'
) WHERE place = 1;

-- The chosen λ, fit on all training ratings.
INSERT INTO pu_ease_fits
SELECT t.stage, l.lambda,
       ease_fit(t.user_id, t.item_id, '{"top_k": 200, "lambda": ' || CAST(l.lambda AS VARCHAR) || '}') AS model
FROM pu_train t CROSS JOIN pu_lambdas l
WHERE t.stage = 'test'
  AND 'lambda=' || CAST(l.lambda AS VARCHAR) IN (SELECT setting FROM pu_chosen WHERE method = 'EASE')
GROUP BY t.stage, l.lambda;

INSERT INTO pu_recs SELECT * FROM pu_ease_recs WHERE stage = 'test';

SELECT m.method, m.setting AS "chosen on validation",
       round(v.ndcg, 4) AS "validation nDCG@10", round(t.ndcg, 4) AS "nDCG@10",
       round(t.recall, 4) AS "Recall@10", t.users
FROM pu_chosen m
JOIN pu_metrics v ON v.method = m.method AND v.setting = m.setting AND v.stage = 'validation'
JOIN pu_metrics t ON t.method = m.method AND t.setting = m.setting AND t.stage = 'test'
ORDER BY t.ndcg;
