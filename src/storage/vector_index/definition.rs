//! What an index is: its name, column, distance and HNSW parameters, read from pgvector's
//! `CREATE INDEX … USING hnsw (col vector_cosine_ops) WITH (m = 16, ef_construction = 64)`
//! and stored as JSON beside the table's data, so the definition survives restarts and
//! goes wherever the table's directory goes.

use serde::{Deserialize, Serialize};

use super::IndexError;

/// The distance an index orders by, named as pgvector's operator classes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `vector_cosine_ops`: serves `ORDER BY cosine(col, q) DESC` and `col <=> q`.
    Cosine,
    /// `vector_l2_ops`: serves `ORDER BY l2_distance(col, q)` and `col <-> q`.
    L2,
    /// `vector_ip_ops`: serves `ORDER BY dot(col, q) DESC` and `col <#> q`.
    InnerProduct,
}

impl Metric {
    /// The metric of a pgvector operator class name.
    pub fn from_operator_class(name: &str) -> Result<Self, IndexError> {
        match name.to_ascii_lowercase().as_str() {
            "vector_cosine_ops" => Ok(Self::Cosine),
            "vector_l2_ops" => Ok(Self::L2),
            "vector_ip_ops" => Ok(Self::InnerProduct),
            other => Err(IndexError::Unsupported(format!(
                "operator class {other}: hnsw indexes take vector_cosine_ops, vector_l2_ops \
                 or vector_ip_ops"
            ))),
        }
    }

    /// The pgvector operator class, for `pg_indexes.indexdef` and `\d`.
    pub fn operator_class(self) -> &'static str {
        match self {
            Self::Cosine => "vector_cosine_ops",
            Self::L2 => "vector_l2_ops",
            Self::InnerProduct => "vector_ip_ops",
        }
    }

    /// usearch's metric with the same order: cosine distance, squared L2 (same order as
    /// L2), and `1 - dot` (same order as `-dot`).
    pub(super) fn usearch_kind(self) -> usearch::MetricKind {
        match self {
            Self::Cosine => usearch::MetricKind::Cos,
            Self::L2 => usearch::MetricKind::L2sq,
            Self::InnerProduct => usearch::MetricKind::IP,
        }
    }
}

/// pgvector's defaults for `m` and `ef_construction`.
pub const DEFAULT_M: usize = 16;
/// pgvector's default build-time candidate list size.
pub const DEFAULT_EF_CONSTRUCTION: usize = 64;

/// One HNSW index on a vector column of a durable table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDefinition {
    /// The index's name, unique among the schema's indexes (as in PostgreSQL).
    pub name: String,
    /// The indexed column.
    pub column: String,
    /// The distance it orders by.
    pub metric: Metric,
    /// The vectors' dimension, fixed when the index was created.
    pub dimension: usize,
    /// Links per node (pgvector's `m`).
    pub m: usize,
    /// Candidates considered while inserting (pgvector's `ef_construction`).
    pub ef_construction: usize,
}

impl IndexDefinition {
    /// The statement that recreates the index, as `pg_indexes.indexdef` shows it.
    pub fn statement(&self, table: &str) -> String {
        format!(
            "CREATE INDEX {} ON public.{table} USING hnsw ({} {}) WITH (m = {}, \
             ef_construction = {})",
            self.name,
            self.column,
            self.metric.operator_class(),
            self.m,
            self.ef_construction
        )
    }
}

/// Checks an HNSW parameter given in `WITH (…)` against pgvector's limits.
pub fn check_parameter(name: &str, value: usize) -> Result<usize, IndexError> {
    let (low, high) = match name {
        "m" => (2, 100),
        "ef_construction" => (4, 1000),
        _ => {
            return Err(IndexError::Unsupported(format!(
                "index parameter {name}: hnsw indexes take m and ef_construction"
            )))
        }
    };
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(IndexError::BadParameter(format!(
            "{name} = {value} is out of range: it must be between {low} and {high}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_classes_name_metrics() {
        assert_eq!(
            Metric::from_operator_class("VECTOR_COSINE_OPS").ok(),
            Some(Metric::Cosine)
        );
        assert_eq!(
            Metric::from_operator_class("vector_ip_ops").ok(),
            Some(Metric::InnerProduct)
        );
        assert!(Metric::from_operator_class("vector_l1_ops").is_err());
    }

    #[test]
    fn parameters_are_range_checked() {
        assert_eq!(check_parameter("m", 16).ok(), Some(16));
        assert!(check_parameter("m", 1).is_err());
        assert!(check_parameter("ef_construction", 5000).is_err());
        assert!(check_parameter("lists", 10).is_err());
    }
}
