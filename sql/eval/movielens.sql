-- MovieLens-100K, top-10 recommendation, all in rankql SQL.
-- Protocol (as the published reference figures): a random 80/20 split of the ratings
-- (every rating is a positive, whatever its value); for each user with test ratings,
-- rank the items they have not rated in train; nDCG@10, Recall@10, Precision@10
-- averaged over those users. The split is ab_bucket's documented XXH3 hash of
-- 'user:item', so it is the same on every run and machine.
--
-- No peeking: every setting (neighbour count, RP3beta's β, the hybrid's content weight)
-- is chosen on a validation split carved out of the training ratings (15% of them, by
-- another hash), with the models fit on the other 85%. The chosen setting is then fit on
-- all training ratings and its test figures are the only ones reported. (For simplicity
-- both stages run in the same statements; the choice reads validation rows only.)
--
-- Run: python3 sql/eval/fetch_data.py && rankql run --in-memory sql/eval/movielens.sql

CREATE EXTERNAL TABLE ml_ratings (user_id BIGINT, item_id BIGINT, rating BIGINT, ts BIGINT)
STORED AS CSV LOCATION 'eval-data/ml-100k/ratings.csv' OPTIONS ('format.has_header' 'true');

CREATE EXTERNAL TABLE ml_movies (item_id BIGINT, title VARCHAR, year VARCHAR, genres VARCHAR)
STORED AS CSV LOCATION 'eval-data/ml-100k/movies.csv' OPTIONS ('format.has_header' 'true');

CREATE OR REPLACE TABLE ml_split AS
SELECT user_id, item_id, rating,
       ab_bucket(CAST(user_id AS VARCHAR) || ':' || CAST(item_id AS VARCHAR), 'ml100k-80-20', '[80, 20]') AS fold
FROM ml_ratings;

-- Two stages, each a (fit, held-out) pair: 'validation' fits on 85% of the training
-- ratings and holds out the other 15%; 'test' fits on all training ratings and holds out
-- the test ratings.
CREATE OR REPLACE TABLE ml_staged AS
SELECT 'test' AS stage, user_id, item_id, rating, fold = 1 AS held_out FROM ml_split
UNION ALL
SELECT 'validation', user_id, item_id, rating,
       ab_bucket(CAST(user_id AS VARCHAR) || ':' || CAST(item_id AS VARCHAR), 'ml100k-validation', '[85, 15]') = 1
FROM ml_split WHERE fold = 0;

CREATE OR REPLACE TABLE ml_train AS SELECT stage, user_id, item_id, rating FROM ml_staged WHERE NOT held_out;
CREATE OR REPLACE TABLE ml_test AS SELECT stage, user_id, item_id FROM ml_staged WHERE held_out;
CREATE OR REPLACE TABLE ml_users AS SELECT stage, user_id, count(*) AS n_test FROM ml_test GROUP BY stage, user_id;

-- 1. Popularity: the most-rated items in train the user has not rated.
CREATE OR REPLACE TABLE ml_popularity AS SELECT stage, item_id, count(*) AS n FROM ml_train GROUP BY stage, item_id;

CREATE OR REPLACE TABLE rec_popularity AS
SELECT stage, user_id, item_id, rank FROM (
  SELECT u.stage, u.user_id, p.item_id,
         row_number() OVER (PARTITION BY u.stage, u.user_id ORDER BY p.n DESC, p.item_id) AS rank
  FROM ml_users u JOIN ml_popularity p ON p.stage = u.stage
  LEFT JOIN ml_train seen ON seen.stage = u.stage AND seen.user_id = u.user_id AND seen.item_id = p.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

-- 2. Item-item CF, two ways. Both count co-rated items in train; each item keeps its
-- k strongest neighbours (k = 50, 100 or 200, chosen on validation); a user's score for
-- an item sums its weights from the items the user rated.
-- (a) ItemKNN: cosine of the items' user sets.
-- (b) RP3beta: the weight of a random walk item -> user -> item (each step divided by
--     the degree it leaves from), divided by the target item's popularity^β
--     (β = 0.4, 0.6 or 0.8, chosen on validation), which keeps blockbusters from
--     drowning everything else.
CREATE OR REPLACE TABLE ml_weightings AS
SELECT * FROM (VALUES ('cosine', 0.0), ('rp3beta', 0.4), ('rp3beta', 0.6), ('rp3beta', 0.8)) AS w(kind, beta);

CREATE OR REPLACE TABLE ml_user_degree AS SELECT stage, user_id, count(*) AS n FROM ml_train GROUP BY stage, user_id;

CREATE OR REPLACE TABLE ml_item_pairs AS
SELECT a.stage, a.item_id AS item, b.item_id AS neighbour, count(*) AS together,
       sum(1.0 / CAST(d.n AS DOUBLE)) AS walk
FROM ml_train a
JOIN ml_train b ON a.stage = b.stage AND a.user_id = b.user_id AND a.item_id <> b.item_id
JOIN ml_user_degree d ON d.stage = a.stage AND d.user_id = a.user_id
GROUP BY a.stage, a.item_id, b.item_id;

CREATE OR REPLACE TABLE ml_neighbours AS
SELECT * FROM (
  SELECT kind, beta, stage, item, neighbour, weight,
         row_number() OVER (PARTITION BY kind, beta, stage, item ORDER BY weight DESC, neighbour) AS position
  FROM (
    SELECT w.kind, w.beta, p.stage, p.item, p.neighbour,
           CASE WHEN w.kind = 'cosine'
                THEN CAST(p.together AS DOUBLE) / sqrt(CAST(pi.n AS DOUBLE) * CAST(pn.n AS DOUBLE))
                ELSE p.walk / CAST(pi.n AS DOUBLE) / power(CAST(pn.n AS DOUBLE), w.beta) END AS weight
    FROM ml_item_pairs p
    CROSS JOIN ml_weightings w
    JOIN ml_popularity pi ON pi.stage = p.stage AND pi.item_id = p.item
    JOIN ml_popularity pn ON pn.stage = p.stage AND pn.item_id = p.neighbour
  )
) WHERE position <= 200;

-- One pass sums the scores for all three neighbour counts.
CREATE OR REPLACE TABLE ml_cf_scores AS
SELECT n.kind, n.beta, t.stage, t.user_id, n.neighbour AS item_id,
       sum(CASE WHEN n.position <= 50 THEN n.weight ELSE 0 END) AS k50,
       sum(CASE WHEN n.position <= 100 THEN n.weight ELSE 0 END) AS k100,
       sum(n.weight) AS k200
FROM ml_train t JOIN ml_neighbours n ON n.stage = t.stage AND n.item = t.item_id
GROUP BY n.kind, n.beta, t.stage, t.user_id, n.neighbour;

CREATE OR REPLACE TABLE ml_cf_candidates AS
SELECT s.kind, s.beta, k.k, s.stage, s.user_id, s.item_id,
       CASE k.k WHEN 50 THEN s.k50 WHEN 100 THEN s.k100 ELSE s.k200 END AS score
FROM ml_cf_scores s
CROSS JOIN (SELECT * FROM (VALUES (50), (100), (200)) AS k(k)) k
LEFT JOIN ml_train seen ON seen.stage = s.stage AND seen.user_id = s.user_id AND seen.item_id = s.item_id
WHERE seen.item_id IS NULL;

CREATE OR REPLACE TABLE rec_item_cf AS
SELECT kind, beta, k, stage, user_id, item_id, rank FROM (
  SELECT kind, beta, k, stage, user_id, item_id,
         row_number() OVER (PARTITION BY kind, beta, k, stage, user_id ORDER BY score DESC, item_id) AS rank
  FROM ml_cf_candidates WHERE score > 0
) WHERE rank <= 10;

-- 3. Content only: embedded "title (year): genres", a user is the average of the items
-- they rated, weighted by rating; cosine ranks every unrated item.
CREATE OR REPLACE TABLE ml_item_vectors AS
SELECT item_id, embed(title || ' (' || coalesce(year, '') || '): ' || coalesce(genres, '')) AS v
FROM ml_movies;

CREATE OR REPLACE TABLE ml_user_vectors AS
SELECT t.stage, t.user_id, vec_avg(iv.v, CAST(t.rating AS DOUBLE)) AS v
FROM ml_train t JOIN ml_item_vectors iv ON iv.item_id = t.item_id
GROUP BY t.stage, t.user_id;

CREATE OR REPLACE TABLE ml_content_scores AS
SELECT u.stage, u.user_id, iv.item_id, cosine(u.v, iv.v) AS score
FROM ml_user_vectors u CROSS JOIN ml_item_vectors iv;

CREATE OR REPLACE TABLE rec_content AS
SELECT stage, user_id, item_id, rank FROM (
  SELECT s.stage, s.user_id, s.item_id,
         row_number() OVER (PARTITION BY s.stage, s.user_id ORDER BY s.score DESC, s.item_id) AS rank
  FROM ml_content_scores s
  LEFT JOIN ml_train seen ON seen.stage = s.stage AND seen.user_id = s.user_id AND seen.item_id = s.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

-- Metrics of a table of top-10 lists (method, setting, stage, user_id, item_id, rank).
CREATE OR REPLACE TABLE ml_ideal AS
SELECT u.n_test, sum(1.0 / log2(r.value + 1.0)) AS idcg
FROM (SELECT DISTINCT n_test FROM ml_users) u
JOIN generate_series(1, 10) r ON r.value <= u.n_test
GROUP BY u.n_test;

CREATE OR REPLACE TABLE ml_recs AS
SELECT 'popularity' AS method, '-' AS setting, stage, user_id, item_id, rank FROM rec_popularity
UNION ALL
SELECT CASE kind WHEN 'cosine' THEN 'item-item CF (ItemKNN, cosine)' ELSE 'item-item CF (RP3beta)' END,
       CASE kind WHEN 'cosine' THEN 'k=' || CAST(k AS VARCHAR)
            ELSE 'beta=' || CAST(beta AS VARCHAR) || ', k=' || CAST(k AS VARCHAR) END,
       stage, user_id, item_id, rank
FROM rec_item_cf
UNION ALL
SELECT 'content (embedded titles)', '-', stage, user_id, item_id, rank FROM rec_content;

CREATE OR REPLACE VIEW ml_metrics AS
WITH runs AS (SELECT DISTINCT method, setting, stage FROM ml_recs),
per_user AS (
  SELECT r.method, r.setting, u.stage, u.user_id, u.n_test,
         coalesce(sum(1.0 / log2(h.rank + 1.0)), 0) AS dcg,
         count(h.rank) AS hits
  FROM runs r
  JOIN ml_users u ON u.stage = r.stage
  LEFT JOIN (
    SELECT x.method, x.setting, x.stage, x.user_id, x.rank
    FROM ml_recs x JOIN ml_test t ON t.stage = x.stage AND t.user_id = x.user_id AND t.item_id = x.item_id
  ) h ON h.method = r.method AND h.setting = r.setting AND h.stage = u.stage AND h.user_id = u.user_id
  GROUP BY r.method, r.setting, u.stage, u.user_id, u.n_test
)
SELECT p.method, p.setting, p.stage,
       avg(p.dcg / i.idcg) AS ndcg,
       avg(CAST(p.hits AS DOUBLE) / p.n_test) AS recall,
       avg(p.hits / 10.0) AS precision,
       count(*) AS users
FROM per_user p JOIN ml_ideal i ON i.n_test = p.n_test
GROUP BY p.method, p.setting, p.stage;

-- Each method's setting with the best validation nDCG@10.
CREATE OR REPLACE TABLE ml_chosen AS
SELECT method, setting FROM (
  SELECT method, setting, row_number() OVER (PARTITION BY method ORDER BY ndcg DESC, setting) AS place
  FROM ml_metrics WHERE stage = 'validation'
) WHERE place = 1;

-- 4. Hybrid: the chosen RP3beta's score scaled to [0, 1] per user, plus w × the content
-- cosine (w = 0.05, 0.1, 0.2, 0.3 or 0.5, chosen on validation).
CREATE OR REPLACE TABLE rec_hybrid AS
WITH chosen AS (
  SELECT c.kind, c.beta, c.k FROM (SELECT DISTINCT kind, beta, k FROM rec_item_cf) c
  JOIN ml_chosen m ON m.method = 'item-item CF (RP3beta)'
   AND m.setting = 'beta=' || CAST(c.beta AS VARCHAR) || ', k=' || CAST(c.k AS VARCHAR)
  WHERE c.kind = 'rp3beta'
), candidates AS (
  SELECT c.stage, c.user_id, c.item_id,
         c.score / max(c.score) OVER (PARTITION BY c.stage, c.user_id) AS cf,
         coalesce(s.score, 0) AS content
  FROM ml_cf_candidates c
  JOIN chosen ch ON ch.kind = c.kind AND ch.beta = c.beta AND ch.k = c.k
  LEFT JOIN ml_content_scores s ON s.stage = c.stage AND s.user_id = c.user_id AND s.item_id = c.item_id
  WHERE c.score > 0
), blended AS (
  SELECT w.w, c.stage, c.user_id, c.item_id, (1.0 - w.w) * c.cf + w.w * c.content AS score
  FROM candidates c CROSS JOIN (SELECT * FROM (VALUES (0.05), (0.1), (0.2), (0.3), (0.5)) AS w(w)) w
)
SELECT w, stage, user_id, item_id, rank FROM (
  SELECT w, stage, user_id, item_id,
         row_number() OVER (PARTITION BY w, stage, user_id ORDER BY score DESC, item_id) AS rank
  FROM blended
) WHERE rank <= 10;

INSERT INTO ml_recs
SELECT 'hybrid (RP3beta + content)', 'w=' || CAST(w AS VARCHAR), stage, user_id, item_id, rank FROM rec_hybrid;

INSERT INTO ml_chosen
SELECT method, setting FROM (
  SELECT method, setting, row_number() OVER (PARTITION BY method ORDER BY ndcg DESC, setting) AS place
  FROM ml_metrics WHERE stage = 'validation' AND method = 'hybrid (RP3beta + content)'
) WHERE place = 1;

-- 5. EASE (ease_fit: closed-form item-item regression, B = I − P·diag(1/diag P) with
-- P = (XᵀX + λI)⁻¹): λ = 100, 200, 400, 800 or 1600, chosen on validation; each item keeps
-- its 200 strongest neighbours by |weight| (negative weights push items down). Fit on
-- validation first; the chosen λ is then fit on all training ratings for the test.
CREATE OR REPLACE TABLE ml_ease_lambdas AS
SELECT * FROM (VALUES (100), (200), (400), (800), (1600)) AS l(lambda);

CREATE OR REPLACE TABLE ml_ease_fits AS
SELECT t.stage, l.lambda,
       ease_fit(t.user_id, t.item_id, '{"top_k": 200, "lambda": ' || CAST(l.lambda AS VARCHAR) || '}') AS model
FROM ml_train t CROSS JOIN ml_ease_lambdas l
WHERE t.stage = 'validation'
GROUP BY t.stage, l.lambda;

-- A user's score for an item is the sum of its weights from the items the user rated.
CREATE OR REPLACE VIEW ml_ease_recs AS
WITH model AS (
  SELECT stage, lambda, e['item'] AS item, e['neighbour'] AS neighbour, e['weight'] AS weight
  FROM (SELECT stage, lambda, unnest(model) AS e FROM ml_ease_fits)
), scores AS (
  SELECT m.stage, m.lambda, t.user_id, m.neighbour AS item_id, sum(m.weight) AS score
  FROM ml_train t JOIN model m ON m.stage = t.stage AND m.item = t.item_id
  WHERE t.user_id IN (SELECT user_id FROM ml_users u WHERE u.stage = t.stage)
  GROUP BY m.stage, m.lambda, t.user_id, m.neighbour
)
SELECT 'EASE' AS method, 'lambda=' || CAST(lambda AS VARCHAR) AS setting, stage, user_id, item_id, rank FROM (
  SELECT s.stage, s.lambda, s.user_id, s.item_id,
         row_number() OVER (PARTITION BY s.stage, s.lambda, s.user_id ORDER BY s.score DESC, s.item_id) AS rank
  FROM scores s
  LEFT JOIN ml_train seen ON seen.stage = s.stage AND seen.user_id = s.user_id AND seen.item_id = s.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

INSERT INTO ml_recs SELECT * FROM ml_ease_recs;

INSERT INTO ml_chosen
SELECT method, setting FROM (
  SELECT method, setting, row_number() OVER (PARTITION BY method ORDER BY ndcg DESC, setting) AS place
  FROM ml_metrics WHERE stage = 'validation' AND method = 'EASE'
) WHERE place = 1;

INSERT INTO ml_ease_fits
SELECT t.stage, l.lambda,
       ease_fit(t.user_id, t.item_id, '{"top_k": 200, "lambda": ' || CAST(l.lambda AS VARCHAR) || '}') AS model
FROM ml_train t CROSS JOIN ml_ease_lambdas l
WHERE t.stage = 'test'
  AND 'lambda=' || CAST(l.lambda AS VARCHAR) IN (SELECT setting FROM ml_chosen WHERE method = 'EASE')
GROUP BY t.stage, l.lambda;

INSERT INTO ml_recs SELECT * FROM ml_ease_recs WHERE stage = 'test';

-- The report: each method once, at its validation-chosen setting, on the test split.
SELECT m.method, m.setting AS "chosen on validation",
       round(v.ndcg, 4) AS "validation nDCG@10",
       round(t.ndcg, 4) AS "nDCG@10",
       round(t.recall, 4) AS "Recall@10",
       round(t.precision, 4) AS "Precision@10",
       t.users
FROM ml_chosen m
JOIN ml_metrics v ON v.method = m.method AND v.setting = m.setting AND v.stage = 'validation'
JOIN ml_metrics t ON t.method = m.method AND t.setting = m.setting AND t.stage = 'test'
ORDER BY t.ndcg;
