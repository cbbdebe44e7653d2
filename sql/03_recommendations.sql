-- Personalised recommendations: top 5 products per user by cosine to the user vector
-- (among each user's 50 nearest), with softmax probabilities, excluding what the user
-- already bought; users without
-- history (cold start) get the most popular products.
-- Needs: 01_product_vectors.sql, 02_user_vectors.sql

CREATE OR REPLACE TABLE popularity AS
SELECT product_id,
       sum(CASE event_type WHEN 'purchase' THEN 8 WHEN 'add_to_cart' THEN 4 WHEN 'click' THEN 2 ELSE 1 END) AS popularity
FROM events GROUP BY product_id;

CREATE OR REPLACE TABLE recommendations AS
WITH candidates AS (
  -- The 50 nearest products of every user at once (through product_vectors' HNSW index
  -- when it has one: CREATE INDEX ON product_vectors USING hnsw (vec vector_cosine_ops)).
  SELECT n.query_id AS user_id, n.neighbour_id AS product_id, n.score
  FROM nearest('user_vectors', 'user_id', 'vec', 'product_vectors', 'product_id', 'vec', 50) n
  WHERE NOT EXISTS (
    SELECT 1 FROM events b
    WHERE b.user_id = n.query_id AND b.product_id = n.neighbour_id AND b.event_type = 'purchase'
  )
),
ranked AS (
  SELECT user_id, product_id, score,
         softmax_rank(score, 0.05) OVER (PARTITION BY user_id) AS probability,
         ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY score DESC, product_id) AS rnk
  FROM candidates
),
personalised AS (
  SELECT user_id, product_id, score, probability, rnk, 'personalised' AS source FROM ranked WHERE rnk <= 5
),
cold_start AS (
  SELECT u.user_id, p.product_id, CAST(p.popularity AS DOUBLE) AS score,
         CAST(NULL AS DOUBLE) AS probability,
         ROW_NUMBER() OVER (PARTITION BY u.user_id ORDER BY p.popularity DESC, p.product_id) AS rnk,
         'popular' AS source
  FROM users u CROSS JOIN popularity p
  WHERE u.user_id NOT IN (SELECT user_id FROM user_vectors)
)
SELECT * FROM personalised
UNION ALL
SELECT * FROM cold_start WHERE rnk <= 5;

SELECT r.user_id, u.favourite_category, r.rnk, p.category, p.title, round(r.score, 3) AS score, round(r.probability, 3) AS p, r.source
FROM recommendations r JOIN users u USING (user_id) JOIN products p USING (product_id)
WHERE r.user_id IN (1, 2, 200)
ORDER BY r.user_id, r.rnk;
