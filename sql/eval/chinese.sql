-- Chinese e-commerce search, in rankql SQL: minilm vs e5 vs a character-bigram keyword
-- match vs e5 fused with it, on real Taobao/OpenBG data (../shared/data/ecomgpt_zh).
--
-- OpenBG: 1,000 product titles in 136 leaf categories; every leaf name is a query and the
-- products of that leaf are relevant (nDCG@10, binary gains). About half of the titles
-- contain their leaf name, so the same queries are also scored on the products whose
-- title contains no part of the leaf name ("semantic subset": meaning, not string match).
-- Multi-CPR: 250 real Taobao queries over 2,083 titles, one annotated relevant title
-- each (MRR@10, Recall@10).
--
-- Queries go through embed_query(), titles through embed() (e5 prefixes them with
-- 'query: ' and 'passage: '; minilm has no prefixes). The blend weight is chosen on half
-- of the OpenBG queries (a hash of the label) and reported on the other half and on
-- Multi-CPR, which play no part in the choice.
--
-- Run: python3 models/fetch.py && python3 sql/eval/fetch_data.py &&
--      rankql run --in-memory sql/eval/chinese.sql      (needs ../shared/data)

CREATE EXTERNAL TABLE zh_products (product_id BIGINT, title VARCHAR, coarse VARCHAR, fine VARCHAR)
STORED AS CSV LOCATION 'eval-data/ecomgpt_zh/openbg.csv' OPTIONS ('format.has_header' 'true');
CREATE EXTERNAL TABLE zh_corpus (doc_id BIGINT, title VARCHAR)
STORED AS CSV LOCATION 'eval-data/ecomgpt_zh/mcpr_corpus.csv' OPTIONS ('format.has_header' 'true');
CREATE EXTERNAL TABLE zh_mcpr (query_id BIGINT, query VARCHAR, doc_id BIGINT)
STORED AS CSV LOCATION 'eval-data/ecomgpt_zh/mcpr_queries.csv' OPTIONS ('format.has_header' 'true');

-- One search task per data set: its queries, documents and judgements.
CREATE OR REPLACE TABLE zh_queries AS
SELECT 'openbg' AS task, row_number() OVER (ORDER BY fine) AS query_id, fine AS query,
       CASE ab_bucket(fine, 'zh-queries', '[50, 50]') WHEN 0 THEN 'validation' ELSE 'test' END AS split
FROM (SELECT DISTINCT fine FROM zh_products)
UNION ALL
SELECT 'mcpr', query_id, query, 'test' FROM zh_mcpr;

CREATE OR REPLACE TABLE zh_docs AS
SELECT 'openbg' AS task, product_id AS doc_id, title FROM zh_products
UNION ALL
SELECT 'mcpr', doc_id, title FROM zh_corpus;

CREATE OR REPLACE TABLE zh_relevant AS
SELECT 'openbg' AS task, q.query_id, p.product_id AS doc_id
FROM zh_queries q JOIN zh_products p ON q.task = 'openbg' AND p.fine = q.query
UNION ALL
SELECT 'mcpr', query_id, doc_id FROM zh_mcpr;

-- The keyword baseline: the share of the query's character bigrams (of each '/'-separated
-- part; a one-character part is its own term) found in the title.
CREATE OR REPLACE TABLE zh_query_parts AS
SELECT task, query_id, part FROM (
  SELECT task, query_id, unnest(string_to_array(query, '/')) AS part FROM zh_queries
) WHERE length(trim(part)) > 0;

CREATE OR REPLACE TABLE zh_terms AS
SELECT DISTINCT task, query_id, CASE WHEN length(part) = 1 THEN part ELSE substr(part, g.value, 2) END AS term
FROM zh_query_parts CROSS JOIN generate_series(1, 64) g
WHERE g.value <= greatest(length(part) - 1, 1);

CREATE OR REPLACE TABLE zh_keyword AS
SELECT t.task, t.query_id, d.doc_id,
       avg(CASE WHEN strpos(lower(d.title), lower(t.term)) > 0 THEN 1.0 ELSE 0.0 END) AS score
FROM zh_terms t JOIN zh_docs d ON d.task = t.task
GROUP BY t.task, t.query_id, d.doc_id;

-- Titles containing a part of their query's label: left out of the semantic subset.
CREATE OR REPLACE TABLE zh_lexical AS
SELECT DISTINCT p.task, p.query_id, d.doc_id
FROM zh_query_parts p JOIN zh_docs d ON d.task = p.task AND strpos(d.title, p.part) > 0
WHERE p.task = 'openbg';

-- The embeddings: both models, queries as queries and titles as passages.
CREATE OR REPLACE TABLE zh_doc_vectors AS
SELECT task, doc_id, embed('minilm', title) AS minilm, embed('e5', title) AS e5 FROM zh_docs;
CREATE OR REPLACE TABLE zh_query_vectors AS
SELECT task, query_id, embed_query('minilm', query) AS minilm, embed_query('e5', query) AS e5
FROM zh_queries;

CREATE OR REPLACE TABLE zh_scores AS
SELECT q.task, q.query_id, d.doc_id,
       cosine(q.minilm, d.minilm) AS minilm, cosine(q.e5, d.e5) AS e5,
       coalesce(k.score, 0.0) AS keyword,
       l.doc_id IS NULL AS semantic
FROM zh_query_vectors q
JOIN zh_doc_vectors d ON d.task = q.task
LEFT JOIN zh_keyword k ON k.task = q.task AND k.query_id = q.query_id AND k.doc_id = d.doc_id
LEFT JOIN zh_lexical l ON l.task = q.task AND l.query_id = q.query_id AND l.doc_id = d.doc_id;

-- Each method ranks every candidate set: all titles, and (OpenBG) the semantic subset.
CREATE OR REPLACE TABLE zh_candidates AS
SELECT 'all' AS subset, * FROM zh_scores
UNION ALL
SELECT 'semantic', * FROM zh_scores WHERE task = 'openbg' AND semantic;

CREATE OR REPLACE TABLE zh_blend_weights AS SELECT * FROM (VALUES (0.01), (0.03), (0.1), (0.3)) AS w(w);

CREATE OR REPLACE TABLE zh_ranked AS
SELECT subset, task, query_id, doc_id, 'minilm' AS method, '-' AS setting,
       row_number() OVER (PARTITION BY subset, task, query_id ORDER BY minilm DESC, doc_id) AS rank
FROM zh_candidates
UNION ALL
SELECT subset, task, query_id, doc_id, 'e5', '-',
       row_number() OVER (PARTITION BY subset, task, query_id ORDER BY e5 DESC, doc_id)
FROM zh_candidates
UNION ALL
SELECT subset, task, query_id, doc_id, 'character bigrams', '-',
       row_number() OVER (PARTITION BY subset, task, query_id ORDER BY keyword DESC, doc_id)
FROM zh_candidates WHERE keyword > 0
UNION ALL
SELECT subset, task, query_id, doc_id, 'e5 + w x bigrams', 'w=' || CAST(w AS VARCHAR),
       row_number() OVER (PARTITION BY w, subset, task, query_id ORDER BY e5 + w * keyword DESC, doc_id)
FROM zh_candidates CROSS JOIN zh_blend_weights;

CREATE OR REPLACE TABLE zh_fused AS
SELECT subset, task, query_id, doc_id, 'e5 rrf bigrams' AS method, '-' AS setting,
       row_number() OVER (PARTITION BY subset, task, query_id ORDER BY score DESC, doc_id) AS rank
FROM (
  SELECT subset, task, query_id, doc_id, sum(rrf(rank)) AS score
  FROM zh_ranked WHERE method IN ('e5', 'character bigrams') AND rank <= 100
  GROUP BY subset, task, query_id, doc_id
);

CREATE OR REPLACE TABLE zh_top AS
SELECT * FROM zh_ranked WHERE rank <= 10
UNION ALL
SELECT * FROM zh_fused WHERE rank <= 10;

-- Per query: DCG, reciprocal rank and hits in the top 10, over the relevant candidates.
CREATE OR REPLACE TABLE zh_relevant_candidates AS
SELECT c.subset, c.task, c.query_id, count(*) AS relevant
FROM zh_candidates c JOIN zh_relevant r ON r.task = c.task AND r.query_id = c.query_id AND r.doc_id = c.doc_id
GROUP BY c.subset, c.task, c.query_id;

CREATE OR REPLACE TABLE zh_per_query AS
SELECT m.method, m.setting, rc.subset, rc.task, rc.query_id, q.split,
       coalesce(h.dcg, 0.0) / ideal.idcg AS ndcg,
       coalesce(h.rr, 0.0) AS rr,
       coalesce(h.hits, 0) * 1.0 / rc.relevant AS recall
FROM (SELECT DISTINCT method, setting FROM zh_top) m
CROSS JOIN zh_relevant_candidates rc
JOIN zh_queries q ON q.task = rc.task AND q.query_id = rc.query_id
JOIN (
  SELECT rc2.subset, rc2.task, rc2.query_id, sum(1.0 / log2(g.value + 1.0)) AS idcg
  FROM zh_relevant_candidates rc2 JOIN generate_series(1, 10) g ON g.value <= rc2.relevant
  GROUP BY rc2.subset, rc2.task, rc2.query_id
) ideal ON ideal.subset = rc.subset AND ideal.task = rc.task AND ideal.query_id = rc.query_id
LEFT JOIN (
  SELECT t.method, t.setting, t.subset, t.task, t.query_id,
         sum(1.0 / log2(t.rank + 1.0)) AS dcg, max(1.0 / t.rank) AS rr, count(*) AS hits
  FROM zh_top t JOIN zh_relevant r ON r.task = t.task AND r.query_id = t.query_id AND r.doc_id = t.doc_id
  GROUP BY t.method, t.setting, t.subset, t.task, t.query_id
) h ON h.method = m.method AND h.setting = m.setting AND h.subset = rc.subset
   AND h.task = rc.task AND h.query_id = rc.query_id;

-- The blend weight with the best nDCG@10 on the OpenBG validation queries.
CREATE OR REPLACE TABLE zh_chosen AS
SELECT setting FROM (
  SELECT setting, avg(ndcg) AS ndcg FROM zh_per_query
  WHERE method = 'e5 + w x bigrams' AND task = 'openbg' AND subset = 'all' AND split = 'validation'
  GROUP BY setting
) ORDER BY ndcg DESC, setting LIMIT 1;

SELECT p.method, max(p.setting) AS setting,
       round(avg(CASE WHEN p.task = 'openbg' AND p.subset = 'all' THEN p.ndcg END), 4) AS "OpenBG nDCG@10",
       round(avg(CASE WHEN p.task = 'openbg' AND p.subset = 'all' AND p.split = 'test' THEN p.ndcg END), 4) AS "OpenBG test half",
       round(avg(CASE WHEN p.task = 'openbg' AND p.subset = 'semantic' THEN p.ndcg END), 4) AS "OpenBG semantic subset",
       round(avg(CASE WHEN p.task = 'mcpr' THEN p.rr END), 4) AS "Multi-CPR MRR@10",
       round(avg(CASE WHEN p.task = 'mcpr' THEN p.recall END), 4) AS "Multi-CPR Recall@10"
FROM zh_per_query p
WHERE p.method <> 'e5 + w x bigrams' OR p.setting IN (SELECT setting FROM zh_chosen)
GROUP BY p.method
ORDER BY "OpenBG nDCG@10";

SELECT task, subset, count(*) AS queries, sum(relevant) AS relevant_titles
FROM zh_relevant_candidates GROUP BY task, subset ORDER BY task, subset;
