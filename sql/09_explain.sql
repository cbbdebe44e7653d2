-- Explanations: why each recommended product is there — the exact share of each of the
-- user's behaviours in its score, top three reasons per product and the rest in one row,
-- so that the shares add up to the score.
-- Needs: 01_product_vectors.sql, 02_user_vectors.sql, 03_recommendations.sql
--
-- 1. Content recommendations (03): the user vector is vec_avg(vₑ, wₑ) = Σ wₑ·vₑ / Σ w, so
--    cos(u, p) = Σₑ wₑ·(vₑ·p) / (Σ w · ‖u‖ · ‖p‖): each behaviour's term is its exact share.

-- Each event's weight, exactly as 02_user_vectors.sql weighs it.
CREATE OR REPLACE TABLE behaviour_weights AS
SELECT e.user_id, e.product_id, e.event_type,
       w.weight * exp(-(extract(epoch FROM (TIMESTAMP '2026-11-01 00:00:00' - e.ts)) / 86400.0) / 30.0) AS weight
FROM events e JOIN event_weights w USING (event_type);

CREATE OR REPLACE TABLE recommendation_reasons AS
WITH recs AS (
  SELECT r.user_id, r.product_id, r.rnk, cosine(u.vec, p.vec) AS score,
         sqrt(dot(u.vec, u.vec)) * sqrt(dot(p.vec, p.vec)) AS norms
  FROM recommendations r JOIN user_vectors u USING (user_id) JOIN product_vectors p USING (product_id)
  WHERE r.source = 'personalised'
),
totals AS (SELECT user_id, sum(weight) AS total FROM behaviour_weights GROUP BY user_id),
events_per_product AS (
  SELECT user_id, product_id, sum(weight) AS weight,
         string_agg(CASE WHEN n = 1 THEN event_type ELSE event_type || ' ×' || CAST(n AS VARCHAR) END, ', '
                    ORDER BY weight DESC, event_type) AS what
  FROM (SELECT user_id, product_id, event_type, sum(weight) AS weight, count(*) AS n
        FROM behaviour_weights GROUP BY user_id, product_id, event_type)
  GROUP BY user_id, product_id
),
terms AS (
  SELECT r.user_id, r.product_id, r.rnk, r.score, b.product_id AS because_of, b.what,
         b.weight * dot(bv.vec, pv.vec) / (t.total * r.norms) AS share
  FROM recs r
  JOIN events_per_product b ON b.user_id = r.user_id
  JOIN product_vectors bv ON bv.product_id = b.product_id
  JOIN product_vectors pv ON pv.product_id = r.product_id
  JOIN totals t ON t.user_id = r.user_id
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY user_id, product_id ORDER BY share DESC, because_of) AS reason
  FROM terms
)
SELECT user_id, product_id, rnk, score, reason, because_of, what, share FROM ranked WHERE reason <= 3
UNION ALL
SELECT user_id, product_id, rnk, score, 4, CAST(NULL AS BIGINT),
       'the other ' || CAST(count(*) AS VARCHAR) || ' products', sum(share)
FROM ranked WHERE reason > 3
GROUP BY user_id, product_id, rnk, score;

SELECT r.user_id, r.rnk, p.title AS recommended, round(r.score, 4) AS score, r.reason,
       coalesce(b.title, r.what) AS because_of, CASE WHEN r.because_of IS NULL THEN '' ELSE r.what END AS behaviour,
       round(r.share, 4) AS share
FROM recommendation_reasons r
JOIN products p ON p.product_id = r.product_id
LEFT JOIN products b ON b.product_id = r.because_of
WHERE r.user_id = 1 AND r.rnk <= 2
ORDER BY r.rnk, r.reason;

-- 2. Item-item recommendations from EASE (ease_fit) on the same behaviour: a user's score
--    for product j is Σᵢ xᵤᵢ·Bᵢⱼ over the products i the user touched (xᵤᵢ: the user's
--    strongest event weight on i), so each term is the share of product i.
CREATE OR REPLACE TABLE user_product_strength AS
SELECT e.user_id, e.product_id, max(w.weight) AS strength
FROM events e JOIN event_weights w USING (event_type)
GROUP BY e.user_id, e.product_id;

CREATE OR REPLACE TABLE item_item AS
SELECT e['item'] AS item, e['neighbour'] AS neighbour, e['weight'] AS weight
FROM (SELECT unnest(ease_fit(user_id, product_id, strength, '{"lambda": 50, "top_k": 50}')) AS e
      FROM user_product_strength);

CREATE OR REPLACE TABLE item_item_reasons AS
WITH terms AS (
  SELECT s.user_id, m.neighbour AS product_id, m.item AS because_of, s.strength * m.weight AS share
  FROM user_product_strength s JOIN item_item m ON m.item = s.product_id
  WHERE NOT EXISTS (SELECT 1 FROM user_product_strength seen
                    WHERE seen.user_id = s.user_id AND seen.product_id = m.neighbour)
),
scores AS (
  SELECT user_id, product_id, sum(share) AS score,
         row_number() OVER (PARTITION BY user_id ORDER BY sum(share) DESC, product_id) AS rnk
  FROM terms GROUP BY user_id, product_id
),
ranked AS (
  SELECT t.*, s.score, s.rnk,
         row_number() OVER (PARTITION BY t.user_id, t.product_id ORDER BY t.share DESC, t.because_of) AS reason
  FROM terms t JOIN scores s USING (user_id, product_id)
  WHERE s.rnk <= 5
)
SELECT user_id, product_id, rnk, score, reason, because_of, share FROM ranked WHERE reason <= 3
UNION ALL
SELECT user_id, product_id, rnk, score, 4, CAST(NULL AS BIGINT), sum(share)
FROM ranked WHERE reason > 3
GROUP BY user_id, product_id, rnk, score;

SELECT r.user_id, r.rnk, p.title AS recommended, round(r.score, 3) AS score, r.reason,
       coalesce(b.title, 'the other products') AS because_of, round(r.share, 3) AS share
FROM item_item_reasons r
JOIN products p ON p.product_id = r.product_id
LEFT JOIN products b ON b.product_id = r.because_of
WHERE r.user_id = 1 AND r.rnk <= 2
ORDER BY r.rnk, r.reason;

-- The check: in both tables, every recommended product's shares add up to its score.
-- (A product's rows come from two evaluations of the same sums, which may round
-- differently in the last bit when summed in another order, as on a cluster: so the
-- check takes one score per product rather than grouping by it.)
SELECT 'content' AS model, count(*) AS recommendations, max(abs(total - score)) AS largest_gap
FROM (SELECT user_id, product_id, max(score) AS score, sum(share) AS total FROM recommendation_reasons GROUP BY user_id, product_id)
UNION ALL
SELECT 'EASE item-item', count(*), max(abs(total - score))
FROM (SELECT user_id, product_id, max(score) AS score, sum(share) AS total FROM item_item_reasons GROUP BY user_id, product_id)
ORDER BY model;
