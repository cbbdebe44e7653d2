-- Semantic search ranking: embed(query) against product vectors, blended with a keyword
-- match signal by reciprocal-rank fusion, with softmax probabilities.
-- Needs: 01_product_vectors.sql

CREATE OR REPLACE TABLE search_queries AS
SELECT * FROM (VALUES (1, 'shoes for my first marathon'), (2, 'coffee for the office'), (3, 'quiet headphones for commuting')) AS q(query_id, query);

-- The words of each query (longer than 3 letters), for the keyword signal.
CREATE OR REPLACE TABLE query_words AS
SELECT query_id, word FROM (
  SELECT query_id, unnest(string_to_array(lower(query), ' ')) AS word FROM search_queries
) WHERE length(word) > 3;

CREATE OR REPLACE TABLE search_results AS
WITH semantic AS (
  SELECT q.query_id, pv.product_id,
         ROW_NUMBER() OVER (PARTITION BY q.query_id ORDER BY cosine(pv.vec, embed(q.query)) DESC) AS rnk
  FROM search_queries q CROSS JOIN product_vectors pv
),
keyword_hits AS (
  SELECT w.query_id, p.product_id, count(*) AS hits
  FROM query_words w JOIN products p ON strpos(lower(p.title || ' ' || p.description), w.word) > 0
  GROUP BY w.query_id, p.product_id
),
keyword AS (
  SELECT query_id, product_id,
         ROW_NUMBER() OVER (PARTITION BY query_id ORDER BY hits DESC, product_id) AS rnk
  FROM keyword_hits
),
fused AS (
  SELECT query_id, product_id, sum(rrf(rnk)) AS score
  FROM (SELECT * FROM semantic WHERE rnk <= 50 UNION ALL SELECT * FROM keyword WHERE rnk <= 50)
  GROUP BY query_id, product_id
)
SELECT query_id, product_id, score,
       softmax_rank(score * 1000) OVER (PARTITION BY query_id) AS probability,
       ROW_NUMBER() OVER (PARTITION BY query_id ORDER BY score DESC, product_id) AS rnk
FROM fused;

SELECT q.query, r.rnk, p.category, p.title, round(r.probability, 3) AS p
FROM search_results r JOIN search_queries q USING (query_id) JOIN products p USING (product_id)
WHERE r.rnk <= 3 ORDER BY q.query_id, r.rnk;

-- The same catalogue searched in Chinese: e5 puts Chinese and English in one vector
-- space. Titles are embedded as passages (embed) and queries as queries (embed_query):
-- e5 was trained with 'passage: ' and 'query: ' prefixes, which these functions add.
CREATE OR REPLACE TABLE product_vectors_e5 AS
SELECT product_id, embed('e5', title || '. ' || description) AS vec FROM products;

CREATE OR REPLACE TABLE search_queries_zh AS
SELECT * FROM (VALUES (1, '跑马拉松穿的鞋'), (2, '办公室喝的咖啡'), (3, '通勤用的安静耳机')) AS q(query_id, query);

CREATE OR REPLACE TABLE search_results_zh AS
SELECT q.query_id, pv.product_id,
       ROW_NUMBER() OVER (PARTITION BY q.query_id ORDER BY cosine(pv.vec, embed_query('e5', q.query)) DESC, pv.product_id) AS rnk
FROM search_queries_zh q CROSS JOIN product_vectors_e5 pv;

SELECT q.query, r.rnk, p.category, p.title
FROM search_results_zh r JOIN search_queries_zh q USING (query_id) JOIN products p USING (product_id)
WHERE r.rnk <= 3 ORDER BY q.query_id, r.rnk;
