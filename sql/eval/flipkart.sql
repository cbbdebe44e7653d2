-- Flipkart sample: semantic search, in rankql SQL.
-- Protocol: every category name (any level of a product's category tree except the
-- product-specific last one) shared by at least 5 products is a query; a product is
-- relevant when that category is in its tree. nDCG@10 (binary gains) for keyword
-- matching, embedding cosine, and the two fused (reciprocal-rank fusion, and a score
-- blend).
--
-- No peeking: the queries are split in two by a hash of their text (ab_bucket,
-- 'flipkart-queries'); each fusion weight is chosen on the validation half and reported
-- once, on the test half. (Both halves run in the same statements; the choice reads the
-- validation half only.)
--
-- Run: python3 sql/eval/fetch_data.py && rankql run --in-memory sql/eval/flipkart.sql
-- (needs ../shared/data; fetch_data.py says so when it is absent)

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
       CASE ab_bucket(category, 'flipkart-queries', '[50, 50]') WHEN 0 THEN 'validation' ELSE 'test' END AS split
FROM (SELECT category, count(*) AS n FROM fk_categories GROUP BY category)
WHERE n >= 5 AND category <> '';

-- Keyword signal: the share of the query's words found in the product's name and
-- description, names counting double.
CREATE OR REPLACE TABLE fk_query_words AS
SELECT query_id, word FROM (
  SELECT query_id, unnest(string_to_array(query, ' ')) AS word FROM fk_queries
) WHERE length(word) > 2;

CREATE OR REPLACE TABLE fk_keyword AS
SELECT w.query_id, p.product_id,
       sum(CASE WHEN strpos(lower(p.name), w.word) > 0 THEN 2.0
                WHEN strpos(lower(p.description), w.word) > 0 THEN 1.0
                ELSE 0.0 END) AS score
FROM fk_query_words w CROSS JOIN fk_products p
GROUP BY w.query_id, p.product_id;

-- Embedding signal: embed(query) against embed(name + the start of the description).
CREATE OR REPLACE TABLE fk_product_vectors AS
SELECT product_id, embed(name || '. ' || substr(coalesce(description, ''), 1, 300)) AS v
FROM fk_products;
CREATE OR REPLACE TABLE fk_query_vectors AS SELECT query_id, embed(query) AS v FROM fk_queries;

CREATE OR REPLACE TABLE fk_semantic AS
SELECT q.query_id, p.product_id, cosine(q.v, p.v) AS score
FROM fk_query_vectors q CROSS JOIN fk_product_vectors p;

-- The multilingual e5 on the same texts (titles as passages, queries as queries), to
-- check that the model that reads Chinese loses nothing on English.
CREATE OR REPLACE TABLE fk_product_vectors_e5 AS
SELECT product_id, embed('e5', name || '. ' || substr(coalesce(description, ''), 1, 300)) AS v
FROM fk_products;
CREATE OR REPLACE TABLE fk_query_vectors_e5 AS SELECT query_id, embed_query('e5', query) AS v FROM fk_queries;
CREATE OR REPLACE TABLE fk_semantic_e5 AS
SELECT q.query_id, p.product_id, cosine(q.v, p.v) AS score
FROM fk_query_vectors_e5 q CROSS JOIN fk_product_vectors_e5 p;

CREATE OR REPLACE TABLE fk_ranked AS
SELECT 'keyword' AS signal, query_id, product_id,
       row_number() OVER (PARTITION BY query_id ORDER BY score DESC, product_id) AS rank
FROM fk_keyword WHERE score > 0
UNION ALL
SELECT 'embedding', query_id, product_id,
       row_number() OVER (PARTITION BY query_id ORDER BY score DESC, product_id)
FROM fk_semantic
UNION ALL
SELECT 'embedding e5', query_id, product_id,
       row_number() OVER (PARTITION BY query_id ORDER BY score DESC, product_id)
FROM fk_semantic_e5;

-- Fusion weights tried (each chosen on the validation queries).
CREATE OR REPLACE TABLE fk_rrf_weights AS SELECT * FROM (VALUES (0.1), (0.2), (0.3), (0.5), (0.7)) AS w(w);
CREATE OR REPLACE TABLE fk_blend_weights AS SELECT * FROM (VALUES (0.01), (0.02), (0.05), (0.1), (0.2)) AS w(w);

CREATE OR REPLACE TABLE fk_results AS
SELECT 'keyword only' AS method, '-' AS setting, query_id, product_id, rank FROM fk_ranked WHERE signal = 'keyword' AND rank <= 10
UNION ALL
SELECT 'embedding only', '-', query_id, product_id, rank FROM fk_ranked WHERE signal = 'embedding' AND rank <= 10
UNION ALL
SELECT 'embedding only (e5)', '-', query_id, product_id, rank FROM fk_ranked WHERE signal = 'embedding e5' AND rank <= 10
UNION ALL
SELECT 'fused (rrf)', '-', query_id, product_id, rank FROM (
  SELECT query_id, product_id, row_number() OVER (PARTITION BY query_id ORDER BY score DESC, product_id) AS rank
  FROM (SELECT query_id, product_id, sum(rrf(rank)) AS score FROM fk_ranked WHERE rank <= 100 AND signal <> 'embedding e5' GROUP BY query_id, product_id)
) WHERE rank <= 10
UNION ALL
SELECT 'fused (rrf, weighted keyword)', 'keyword weight ' || CAST(w AS VARCHAR), query_id, product_id, rank FROM (
  SELECT w, query_id, product_id, row_number() OVER (PARTITION BY w, query_id ORDER BY score DESC, product_id) AS rank
  FROM (
    SELECT k.w, r.query_id, r.product_id,
           sum(CASE WHEN r.signal = 'keyword' THEN k.w ELSE 1.0 END * rrf(r.rank)) AS score
    FROM fk_ranked r CROSS JOIN fk_rrf_weights k
    WHERE r.rank <= 100 AND r.signal <> 'embedding e5' GROUP BY k.w, r.query_id, r.product_id)
) WHERE rank <= 10
UNION ALL
SELECT 'fused (cosine + w x keyword)', 'w=' || CAST(w AS VARCHAR), query_id, product_id, rank FROM (
  SELECT b.w, s.query_id, s.product_id,
         row_number() OVER (PARTITION BY b.w, s.query_id ORDER BY s.score + b.w * coalesce(k.score, 0) DESC, s.product_id) AS rank
  FROM fk_semantic s CROSS JOIN fk_blend_weights b
  LEFT JOIN fk_keyword k ON k.query_id = s.query_id AND k.product_id = s.product_id
) WHERE rank <= 10;

CREATE OR REPLACE TABLE fk_ideal AS
SELECT q.query_id, q.split, sum(1.0 / log2(r.value + 1.0)) AS idcg
FROM fk_queries q JOIN generate_series(1, 10) r ON r.value <= q.relevant
GROUP BY q.query_id, q.split;

CREATE OR REPLACE TABLE fk_metrics AS
SELECT m.method, m.setting, i.split,
       avg(coalesce(d.dcg, 0) / i.idcg) AS ndcg,
       count(*) AS queries
FROM (SELECT DISTINCT method, setting FROM fk_results) m
CROSS JOIN fk_ideal i
LEFT JOIN (
  SELECT r.method, r.setting, r.query_id, sum(1.0 / log2(r.rank + 1.0)) AS dcg
  FROM fk_results r
  JOIN fk_queries q ON q.query_id = r.query_id
  JOIN fk_categories c ON c.product_id = r.product_id AND c.category = q.query
  GROUP BY r.method, r.setting, r.query_id
) d ON d.method = m.method AND d.setting = m.setting AND d.query_id = i.query_id
GROUP BY m.method, m.setting, i.split;

-- Each method's setting with the best validation nDCG@10, reported on the test queries.
SELECT c.method, c.setting AS "chosen on validation",
       round(c.ndcg, 4) AS "validation nDCG@10",
       round(t.ndcg, 4) AS "test nDCG@10",
       t.queries AS "test queries"
FROM (
  SELECT method, setting, ndcg,
         row_number() OVER (PARTITION BY method ORDER BY ndcg DESC, setting) AS place
  FROM fk_metrics WHERE split = 'validation'
) c
JOIN fk_metrics t ON t.method = c.method AND t.setting = c.setting AND t.split = 'test'
WHERE c.place = 1
ORDER BY t.ndcg;
