-- MovieLens-100K, top-10 recommendation, all in rankql SQL.
-- Protocol (as the published reference figures): a random 80/20 split of the ratings
-- (every rating is a positive, whatever its value); for each user with test ratings,
-- rank the items they have not rated in train; nDCG@10, Recall@10, Precision@10
-- averaged over those users. The split is ab_bucket's documented XXH3 hash of
-- 'user:item', so it is the same on every run and machine.
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

CREATE OR REPLACE TABLE ml_train AS SELECT user_id, item_id, rating FROM ml_split WHERE fold = 0;
CREATE OR REPLACE TABLE ml_test AS SELECT user_id, item_id FROM ml_split WHERE fold = 1;
CREATE OR REPLACE TABLE ml_users AS SELECT user_id, count(*) AS n_test FROM ml_test GROUP BY user_id;

-- 1. Popularity: the most-rated items in train the user has not rated.
CREATE OR REPLACE TABLE ml_popularity AS SELECT item_id, count(*) AS n FROM ml_train GROUP BY item_id;

CREATE OR REPLACE TABLE rec_popularity AS
SELECT user_id, item_id, rank FROM (
  SELECT u.user_id, p.item_id,
         row_number() OVER (PARTITION BY u.user_id ORDER BY p.n DESC, p.item_id) AS rank
  FROM ml_users u CROSS JOIN ml_popularity p
  LEFT JOIN ml_train seen ON seen.user_id = u.user_id AND seen.item_id = p.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

-- 2. Item-item CF, two ways. Both count co-rated items in train; each item keeps its
-- 200 strongest neighbours; a user's score for an item sums its weights from the items
-- the user rated.
-- (a) ItemKNN: cosine of the items' user sets.
-- (b) RP3beta: the weight of a random walk item -> user -> item (each step divided by
--     the degree it leaves from), divided by the target item's popularity^0.6, which
--     keeps blockbusters from drowning everything else.
CREATE OR REPLACE TABLE ml_user_degree AS SELECT user_id, count(*) AS n FROM ml_train GROUP BY user_id;

CREATE OR REPLACE TABLE ml_item_pairs AS
SELECT a.item_id AS item, b.item_id AS neighbour, count(*) AS together,
       sum(1.0 / CAST(d.n AS DOUBLE)) AS walk
FROM ml_train a
JOIN ml_train b ON a.user_id = b.user_id AND a.item_id <> b.item_id
JOIN ml_user_degree d ON d.user_id = a.user_id
GROUP BY a.item_id, b.item_id;

CREATE OR REPLACE TABLE ml_pair_weights AS
SELECT p.item, p.neighbour,
       CAST(p.together AS DOUBLE) / sqrt(CAST(pi.n AS DOUBLE) * CAST(pn.n AS DOUBLE)) AS cosine,
       p.walk / CAST(pi.n AS DOUBLE) / power(CAST(pn.n AS DOUBLE), 0.6) AS rp3beta
FROM ml_item_pairs p
JOIN ml_popularity pi ON pi.item_id = p.item
JOIN ml_popularity pn ON pn.item_id = p.neighbour;

CREATE OR REPLACE TABLE ml_neighbours AS
SELECT 'cosine' AS kind, item, neighbour, weight FROM (
  SELECT item, neighbour, cosine AS weight,
         row_number() OVER (PARTITION BY item ORDER BY cosine DESC, neighbour) AS k
  FROM ml_pair_weights) WHERE k <= 200
UNION ALL
SELECT 'rp3beta', item, neighbour, weight FROM (
  SELECT item, neighbour, rp3beta AS weight,
         row_number() OVER (PARTITION BY item ORDER BY rp3beta DESC, neighbour) AS k
  FROM ml_pair_weights) WHERE k <= 200;

CREATE OR REPLACE TABLE ml_cf_scores AS
SELECT n.kind, t.user_id, n.neighbour AS item_id, sum(n.weight) AS score
FROM ml_train t JOIN ml_neighbours n ON n.item = t.item_id
GROUP BY n.kind, t.user_id, n.neighbour;

CREATE OR REPLACE TABLE rec_item_cf AS
SELECT kind, user_id, item_id, rank FROM (
  SELECT s.kind, s.user_id, s.item_id,
         row_number() OVER (PARTITION BY s.kind, s.user_id ORDER BY s.score DESC, s.item_id) AS rank
  FROM ml_cf_scores s
  LEFT JOIN ml_train seen ON seen.user_id = s.user_id AND seen.item_id = s.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

-- 3. Content only: embedded "title (year): genres", a user is the average of the items
-- they rated, weighted by rating; cosine ranks every unrated item.
CREATE OR REPLACE TABLE ml_item_vectors AS
SELECT item_id, embed(title || ' (' || coalesce(year, '') || '): ' || coalesce(genres, '')) AS v
FROM ml_movies;

CREATE OR REPLACE TABLE ml_user_vectors AS
SELECT t.user_id, vec_avg(iv.v, CAST(t.rating AS DOUBLE)) AS v
FROM ml_train t JOIN ml_item_vectors iv ON iv.item_id = t.item_id
GROUP BY t.user_id;

CREATE OR REPLACE TABLE ml_content_scores AS
SELECT u.user_id, iv.item_id, cosine(u.v, iv.v) AS score
FROM ml_user_vectors u CROSS JOIN ml_item_vectors iv;

CREATE OR REPLACE TABLE rec_content AS
SELECT user_id, item_id, rank FROM (
  SELECT s.user_id, s.item_id, row_number() OVER (PARTITION BY s.user_id ORDER BY s.score DESC, s.item_id) AS rank
  FROM ml_content_scores s
  LEFT JOIN ml_train seen ON seen.user_id = s.user_id AND seen.item_id = s.item_id
  WHERE seen.item_id IS NULL
) WHERE rank <= 10;

-- 4. Hybrid: the RP3beta score scaled to [0, 1] per user, plus the content cosine.
CREATE OR REPLACE TABLE rec_hybrid AS
WITH candidates AS (
  SELECT c.user_id, c.item_id,
         c.score / max(c.score) OVER (PARTITION BY c.user_id) AS cf,
         coalesce(s.score, 0) AS content
  FROM ml_cf_scores c
  LEFT JOIN ml_content_scores s ON s.user_id = c.user_id AND s.item_id = c.item_id
  LEFT JOIN ml_train seen ON seen.user_id = c.user_id AND seen.item_id = c.item_id
  WHERE c.kind = 'rp3beta' AND seen.item_id IS NULL
), blended AS (
  SELECT user_id, item_id, 0.9 * cf + 0.1 * content AS score FROM candidates
)
SELECT user_id, item_id, rank FROM (
  SELECT user_id, item_id, row_number() OVER (PARTITION BY user_id ORDER BY score DESC, item_id) AS rank
  FROM blended
) WHERE rank <= 10;

-- Metrics.
CREATE OR REPLACE TABLE ml_recs AS
SELECT 'popularity' AS method, * FROM rec_popularity
UNION ALL SELECT 'item-item CF (ItemKNN, cosine)', user_id, item_id, rank FROM rec_item_cf WHERE kind = 'cosine'
UNION ALL SELECT 'item-item CF (RP3beta)', user_id, item_id, rank FROM rec_item_cf WHERE kind = 'rp3beta'
UNION ALL SELECT 'content (embedded titles)', * FROM rec_content
UNION ALL SELECT 'hybrid (RP3beta + content)', * FROM rec_hybrid;

CREATE OR REPLACE TABLE ml_ideal AS
SELECT u.n_test, sum(1.0 / log2(r.value + 1.0)) AS idcg
FROM (SELECT DISTINCT n_test FROM ml_users) u
JOIN generate_series(1, 10) r ON r.value <= u.n_test
GROUP BY u.n_test;

WITH per_user AS (
  SELECT m.method, u.user_id, u.n_test,
         coalesce(sum(1.0 / log2(h.rank + 1.0)), 0) AS dcg,
         count(h.rank) AS hits
  FROM (SELECT DISTINCT method FROM ml_recs) m
  CROSS JOIN ml_users u
  LEFT JOIN (
    SELECT r.method, r.user_id, r.rank
    FROM ml_recs r JOIN ml_test t ON t.user_id = r.user_id AND t.item_id = r.item_id
  ) h ON h.method = m.method AND h.user_id = u.user_id
  GROUP BY m.method, u.user_id, u.n_test
)
SELECT p.method,
       round(avg(p.dcg / i.idcg), 4) AS "nDCG@10",
       round(avg(CAST(p.hits AS DOUBLE) / p.n_test), 4) AS "Recall@10",
       round(avg(p.hits / 10.0), 4) AS "Precision@10",
       count(*) AS users
FROM per_user p JOIN ml_ideal i ON i.n_test = p.n_test
GROUP BY p.method
ORDER BY "nDCG@10";
