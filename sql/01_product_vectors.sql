-- Product vectors: one embedding per product from its title and description.
-- Run: rankql run --demo sql/01_product_vectors.sql
-- Identical texts are embedded once, and the embed() cache (see embed_stats()) makes a
-- re-run within the same process cost only lookups for unchanged products.

CREATE OR REPLACE TABLE product_vectors AS
SELECT product_id, category, embed(title || ' ' || description) AS vec
FROM products;

SELECT count(*) AS products_embedded, min(vector_dims(vec)) AS dimension FROM product_vectors;
