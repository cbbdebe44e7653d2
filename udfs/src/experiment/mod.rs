//! A/B testing in SQL: deterministic assignment of users to experiment arms.

pub mod ab_bucket;
