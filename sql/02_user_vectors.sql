-- User vectors from behaviour: the weighted mean of the vectors of the products a user
-- touched, with weights per event type (view < click < add_to_cart < purchase) and a
-- 30-day exponential time decay from the demo's clock (2026-11-01).
-- Needs: 01_product_vectors.sql

CREATE OR REPLACE TABLE event_weights AS
SELECT * FROM (VALUES ('view', 1.0), ('click', 2.0), ('add_to_cart', 4.0), ('purchase', 8.0)) AS w(event_type, weight);

CREATE OR REPLACE TABLE user_vectors AS
SELECT e.user_id,
       vec_avg(pv.vec, w.weight * exp(-(extract(epoch FROM (TIMESTAMP '2026-11-01 00:00:00' - e.ts)) / 86400.0) / 30.0)) AS vec,
       count(*) AS events
FROM events e
JOIN event_weights w USING (event_type)
JOIN product_vectors pv USING (product_id)
GROUP BY e.user_id;

-- The plain variant: embed the concatenated titles of a user's last 10 events.
CREATE OR REPLACE TABLE user_text_vectors AS
SELECT user_id, embed(string_agg(title, '. ' ORDER BY recency)) AS vec
FROM (
  SELECT e.user_id, p.title,
         ROW_NUMBER() OVER (PARTITION BY e.user_id ORDER BY e.ts DESC) AS recency
  FROM events e JOIN products p USING (product_id)
) WHERE recency <= 10
GROUP BY user_id;

SELECT count(*) AS users_with_vectors FROM user_vectors;
