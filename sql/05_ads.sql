-- Ad ranking: expected value = relevance × bid, softmax over a user's eligible ads,
-- with a daily budget cap per campaign and a frequency cap per user.
-- Needs: 01_product_vectors.sql, 02_user_vectors.sql

CREATE OR REPLACE TABLE campaigns AS
SELECT product_id AS campaign_id, product_id,
       round(0.2 + (product_id % 7) * 0.15, 2) AS bid,
       CAST(50 + (product_id % 5) * 25 AS DOUBLE) AS daily_budget,
       CAST((product_id % 4) * 20 AS DOUBLE) AS spent_today
FROM products WHERE product_id % 3 = 0;

-- Impressions already served today, for the frequency cap (at most 2 per user and ad).
CREATE OR REPLACE TABLE ad_impressions AS
SELECT user_id, campaign_id FROM (VALUES (1, 3), (1, 3), (1, 6), (2, 9)) AS i(user_id, campaign_id);

CREATE OR REPLACE TABLE ad_rankings AS
WITH eligible AS (
  SELECT u.user_id, c.campaign_id, c.bid,
         greatest(cosine(u.vec, pv.vec), 0.0) AS relevance
  FROM user_vectors u
  CROSS JOIN campaigns c
  JOIN product_vectors pv ON pv.product_id = c.product_id
  WHERE c.spent_today + c.bid <= c.daily_budget
    AND (SELECT count(*) FROM ad_impressions i WHERE i.user_id = u.user_id AND i.campaign_id = c.campaign_id) < 2
)
SELECT user_id, campaign_id, bid, relevance, relevance * bid AS expected_value,
       softmax_rank(relevance * bid, 0.05) OVER (PARTITION BY user_id) AS probability,
       ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY relevance * bid DESC, campaign_id) AS slot
FROM eligible;

SELECT user_id, slot, campaign_id, round(relevance, 3) AS relevance, bid, round(expected_value, 3) AS ev, round(probability, 3) AS p
FROM ad_rankings WHERE user_id IN (1, 2) AND slot <= 3 ORDER BY user_id, slot;
