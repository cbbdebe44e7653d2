-- The adapter (adapter_fit / adapt) where behaviour cannot help directly, in rankql SQL.
--
-- 1. MovieLens-100K item cold start: 20% of the movies (by a hash of their id) have no
--    ratings at all in training; the other 80% keep all of theirs. The adapter learns from
--    co-rating pairs of the known movies: each known movie with its 10 nearest known
--    movies by co-rating (cosine of their user sets). A user is the rating-weighted mean
--    of their known movies' vectors; the cold movies are ranked for them by text alone —
--    the embedded "title (year): genres" — with and without the adapter. nDCG@10 and
--    Recall@10 over each user's ratings of cold movies.
-- 2. Flipkart search: the category queries are split in two by a hash of their text (as
--    in flipkart.sql); the adapter learns from (query, relevant product) pairs of the
--    training half, at most 50 per query; nDCG@10 on the test half's queries.
--
-- The adapter's options are fixed beforehand (the defaults, and one pull towards the
-- identity for the small Flipkart sample); nothing is chosen on the test data.
--
-- Run: python3 sql/eval/fetch_data.py && rankql run --in-memory sql/eval/adapter.sql

CREATE EXTERNAL TABLE ml_ratings (user_id BIGINT, item_id BIGINT, rating BIGINT, ts BIGINT)
STORED AS CSV LOCATION 'eval-data/ml-100k/ratings.csv' OPTIONS ('format.has_header' 'true');

CREATE EXTERNAL TABLE ml_movies (item_id BIGINT, title VARCHAR, year VARCHAR, genres VARCHAR)
STORED AS CSV LOCATION 'eval-data/ml-100k/movies.csv' OPTIONS ('format.has_header' 'true');

CREATE OR REPLACE TABLE cs_item_vectors AS
SELECT item_id, embed(title || ' (' || coalesce(year, '') || '): ' || coalesce(genres, '')) AS v,
       ab_bucket('item:' || CAST(item_id AS VARCHAR), 'ml100k-cold-items', '[80, 20]') = 1 AS cold
FROM ml_movies;

CREATE OR REPLACE TABLE cs_known AS
SELECT r.user_id, r.item_id, r.rating FROM ml_ratings r JOIN cs_item_vectors i USING (item_id) WHERE NOT i.cold;
CREATE OR REPLACE TABLE cs_held_out AS
SELECT r.user_id, r.item_id FROM ml_ratings r JOIN cs_item_vectors i USING (item_id) WHERE i.cold;
CREATE OR REPLACE TABLE cs_users AS
SELECT h.user_id, count(*) AS n_test FROM cs_held_out h
WHERE h.user_id IN (SELECT user_id FROM cs_known) GROUP BY h.user_id;

-- Training pairs: each known movie and its 10 nearest known movies by co-rating.
CREATE OR REPLACE TABLE cs_degree AS SELECT item_id, count(*) AS n FROM cs_known GROUP BY item_id;
CREATE OR REPLACE TABLE cs_pairs AS
SELECT item, neighbour, weight FROM (
  SELECT item, neighbour, weight,
         row_number() OVER (PARTITION BY item ORDER BY weight DESC, neighbour) AS position
  FROM (
    SELECT p.item, p.neighbour, CAST(p.together AS DOUBLE) / sqrt(CAST(di.n * dn.n AS DOUBLE)) AS weight
    FROM (
      SELECT a.item_id AS item, b.item_id AS neighbour, count(*) AS together
      FROM cs_known a JOIN cs_known b ON a.user_id = b.user_id AND a.item_id <> b.item_id
      GROUP BY a.item_id, b.item_id
    ) p
    JOIN cs_degree di ON di.item_id = p.item
    JOIN cs_degree dn ON dn.item_id = p.neighbour
  )
) WHERE position <= 10;

-- The adapter: default options ('{"epochs": 0}' would leave the identity).
CREATE OR REPLACE TABLE cs_adapter AS
SELECT adapter_fit(a.v, b.v) AS w
FROM cs_pairs p JOIN cs_item_vectors a ON a.item_id = p.item JOIN cs_item_vectors b ON b.item_id = p.neighbour;

CREATE OR REPLACE TABLE cs_vectors AS
SELECT 'text only' AS method, item_id, cold, v FROM cs_item_vectors
UNION ALL
SELECT 'text + adapter', item_id, cold, adapt((SELECT w FROM cs_adapter), v) FROM cs_item_vectors;

CREATE OR REPLACE TABLE cs_user_vectors AS
SELECT v.method, k.user_id, vec_avg(v.v, CAST(k.rating AS DOUBLE)) AS v
FROM cs_known k JOIN cs_vectors v ON v.item_id = k.item_id
GROUP BY v.method, k.user_id;

CREATE OR REPLACE TABLE cs_scores AS
SELECT u.method, u.user_id, c.item_id, cosine(u.v, c.v) AS score
FROM cs_user_vectors u JOIN cs_vectors c ON c.method = u.method AND c.cold
WHERE u.user_id IN (SELECT user_id FROM cs_users);

CREATE OR REPLACE TABLE cs_recs AS
SELECT method, user_id, item_id, rank FROM (
  SELECT method, user_id, item_id,
         row_number() OVER (PARTITION BY method, user_id ORDER BY score DESC, item_id) AS rank
  FROM cs_scores
) WHERE rank <= 10;

CREATE OR REPLACE TABLE cs_metrics AS
WITH per_user AS (
  SELECT m.method, u.user_id, u.n_test,
         coalesce(sum(1.0 / log2(h.rank + 1.0)), 0) AS dcg, count(h.rank) AS hits
  FROM cs_users u CROSS JOIN (SELECT DISTINCT method FROM cs_recs) m
  LEFT JOIN (
    SELECT r.method, r.user_id, r.rank FROM cs_recs r
    JOIN cs_held_out t ON t.user_id = r.user_id AND t.item_id = r.item_id
  ) h ON h.method = m.method AND h.user_id = u.user_id
  GROUP BY m.method, u.user_id, u.n_test
), ideal AS (
  SELECT u.n_test, sum(1.0 / log2(r.value + 1.0)) AS idcg
  FROM (SELECT DISTINCT n_test FROM cs_users) u JOIN generate_series(1, 10) r ON r.value <= u.n_test
  GROUP BY u.n_test
)
SELECT 'MovieLens-100K cold items' AS evaluation, p.method,
       avg(p.dcg / i.idcg) AS ndcg, avg(CAST(p.hits AS DOUBLE) / p.n_test) AS recall,
       count(*) AS queries, (SELECT count(*) FROM cs_pairs) AS training_pairs
FROM per_user p JOIN ideal i ON i.n_test = p.n_test
GROUP BY p.method;

-- 2. Flipkart search with and without an adapter trained on the training queries.
CREATE EXTERNAL TABLE fk_products (product_id BIGINT, name VARCHAR, description VARCHAR, brand VARCHAR, category_path VARCHAR)
STORED AS CSV LOCATION 'eval-data/flipkart/products.csv' OPTIONS ('format.has_header' 'true');

CREATE OR REPLACE TABLE fk_categories AS
SELECT DISTINCT product_id, regexp_replace(trim(category), '\s+', ' ', 'g') AS category
FROM (
  SELECT product_id, unnest(array_pop_back(string_to_array(category_path, ' >> '))) AS category
  FROM fk_products
);

CREATE OR REPLACE TABLE fk_queries AS
SELECT row_number() OVER (ORDER BY category) AS query_id, category AS query, n AS relevant,
       CASE ab_bucket(category, 'flipkart-queries', '[50, 50]') WHEN 0 THEN 'train' ELSE 'test' END AS split
FROM (SELECT category, count(*) AS n FROM fk_categories GROUP BY category)
WHERE n >= 5 AND category <> '';

CREATE OR REPLACE TABLE fk_product_vectors AS
SELECT product_id, embed(name || '. ' || substr(coalesce(description, ''), 1, 300)) AS v
FROM fk_products;
CREATE OR REPLACE TABLE fk_query_vectors AS SELECT query_id, embed(query) AS v FROM fk_queries;

CREATE OR REPLACE TABLE fk_pairs AS
SELECT query_id, product_id FROM (
  SELECT q.query_id, c.product_id,
         row_number() OVER (PARTITION BY q.query_id ORDER BY ab_bucket(CAST(c.product_id AS VARCHAR), 'fk-pairs', '[50, 50]'), c.product_id) AS position
  FROM fk_queries q JOIN fk_categories c ON c.category = q.query
  WHERE q.split = 'train'
) WHERE position <= 50;

CREATE OR REPLACE TABLE fk_adapter AS
SELECT adapter_fit(q.v, p.v, '{"epochs": 10, "regularization": 0.1}') AS w
FROM fk_pairs x JOIN fk_query_vectors q USING (query_id) JOIN fk_product_vectors p USING (product_id);

CREATE OR REPLACE TABLE fk_scores AS
SELECT 'text only' AS method, q.query_id, p.product_id, cosine(q.v, p.v) AS score
FROM fk_query_vectors q CROSS JOIN fk_product_vectors p
UNION ALL
SELECT 'text + adapter', q.query_id, p.product_id,
       cosine(adapt((SELECT w FROM fk_adapter), q.v), adapt((SELECT w FROM fk_adapter), p.v))
FROM fk_query_vectors q CROSS JOIN fk_product_vectors p;

CREATE OR REPLACE TABLE fk_metrics AS
WITH ranked AS (
  SELECT method, query_id, product_id,
         row_number() OVER (PARTITION BY method, query_id ORDER BY score DESC, product_id) AS rank
  FROM fk_scores
), per_query AS (
  SELECT r.method, q.query_id, q.split, q.relevant,
         sum(CASE WHEN c.product_id IS NOT NULL THEN 1.0 / log2(r.rank + 1.0) ELSE 0 END) AS dcg,
         count(c.product_id) AS hits
  FROM ranked r JOIN fk_queries q USING (query_id)
  LEFT JOIN fk_categories c ON c.product_id = r.product_id AND c.category = q.query
  WHERE r.rank <= 10
  GROUP BY r.method, q.query_id, q.split, q.relevant
), ideal AS (
  SELECT q.query_id, sum(1.0 / log2(g.value + 1.0)) AS idcg
  FROM fk_queries q JOIN generate_series(1, 10) g ON g.value <= q.relevant
  GROUP BY q.query_id
)
SELECT 'Flipkart ' || p.split || ' queries' AS evaluation, p.method,
       avg(p.dcg / i.idcg) AS ndcg, avg(CAST(p.hits AS DOUBLE) / least(p.relevant, 10)) AS recall,
       count(*) AS queries, (SELECT count(*) FROM fk_pairs) AS training_pairs
FROM per_query p JOIN ideal i USING (query_id)
GROUP BY p.split, p.method;

SELECT evaluation, method, round(ndcg, 4) AS "nDCG@10", round(recall, 4) AS "Recall@10", queries, training_pairs
FROM (SELECT * FROM cs_metrics UNION ALL SELECT * FROM fk_metrics)
ORDER BY evaluation, method;
