-- Item-item collaborative filtering in SQL: co-visitation counts from users' behaviour,
-- cosine-normalised (co(a,b) / sqrt(n(a)·n(b))), top 10 neighbours per item, blended
-- with the content signal (cosine of product vectors); and every item's 10 nearest
-- items by content alone (`nearest`).
-- Needs: 01_product_vectors.sql

CREATE OR REPLACE TABLE item_users AS
SELECT DISTINCT user_id, product_id FROM events;

CREATE OR REPLACE TABLE item_counts AS
SELECT product_id, count(*) AS n FROM item_users GROUP BY product_id;

CREATE OR REPLACE TABLE item_neighbours AS
WITH co AS (
  SELECT a.product_id AS item, b.product_id AS neighbour, count(*) AS together
  FROM item_users a JOIN item_users b ON a.user_id = b.user_id AND a.product_id <> b.product_id
  GROUP BY a.product_id, b.product_id
),
scored AS (
  SELECT co.item, co.neighbour,
         co.together / sqrt(CAST(ci.n AS DOUBLE) * cn.n) AS cf_score,
         cosine(pi.vec, pn.vec) AS content_score
  FROM co
  JOIN item_counts ci ON ci.product_id = co.item
  JOIN item_counts cn ON cn.product_id = co.neighbour
  JOIN product_vectors pi ON pi.product_id = co.item
  JOIN product_vectors pn ON pn.product_id = co.neighbour
)
SELECT item, neighbour, cf_score, content_score,
       0.7 * cf_score + 0.3 * content_score AS hybrid_score,
       ROW_NUMBER() OVER (PARTITION BY item ORDER BY 0.7 * cf_score + 0.3 * content_score DESC, neighbour) AS rnk
FROM scored;

-- Content neighbours of every product, so items nobody has co-visited yet have neighbours
-- too: the 10 nearest product vectors (the item itself is its own nearest, dropped),
-- through product_vectors' HNSW index when it has one.
CREATE OR REPLACE TABLE item_content_neighbours AS
SELECT item, neighbour, content_score,
       ROW_NUMBER() OVER (PARTITION BY item ORDER BY content_score DESC, neighbour) AS rnk
FROM (
  SELECT query_id AS item, neighbour_id AS neighbour, score AS content_score
  FROM nearest('product_vectors', 'product_id', 'vec', 'product_vectors', 'product_id', 'vec', 11)
  WHERE query_id <> neighbour_id
);

SELECT n.item, pi.category AS item_category, n.rnk, pn.category AS neighbour_category, pn.title,
       round(n.cf_score, 3) AS cf, round(n.content_score, 3) AS content
FROM item_neighbours n
JOIN products pi ON pi.product_id = n.item
JOIN products pn ON pn.product_id = n.neighbour
WHERE n.item = 1 AND n.rnk <= 5 ORDER BY n.rnk;
