//! rankql: embeddings, similarities and rankings in SQL, served over the Postgres wire
//! protocol.
//!
//! The binary (`src/main.rs`) is a thin CLI over these modules:
//! [`engine`] builds the one SessionContext; [`server`] serves it to Postgres clients;
//! [`runner`] runs SQL in-process for `rankql sql` and `rankql run`; [`demo`] generates
//! the built-in demo shop; [`statements`] splits scripts; [`sqlstate`] maps errors to
//! Postgres error codes; [`pg_compat`] adds catalog functions BI tools call;
//! [`pg_catalog_tables`] adds rankql's own tables beside `pg_catalog`'s; [`pg_roles`]
//! shows rankql's users in `pg_roles` and `pg_user`; [`pg_indexes`] shows vector indexes
//! in `pg_indexes`, `pg_class` and `pg_index`; [`pg_column_types`] names vector and
//! array columns' types in `pg_attribute`; [`pg_functions`] lists rankql's functions in
//! `pg_proc`; [`information_schema_columns`] is PostgreSQL's `information_schema.columns`;
//! [`pg_columns`] gives catalog columns the
//! types clients expect; [`pg_types`] resolves type names
//! (`to_regtype`); [`value_limits`] caps the values string functions make; [`storage`]
//! keeps tables durable as Delta tables in the data directory, with their HNSW indexes;
//! [`cluster`] runs queries on an Apache DataFusion Ballista cluster.
//! The server's own parts
//! (authentication, roles, privileges, sessions, limits, COPY) are in [`server`].

pub mod cluster;
pub mod demo;
pub mod engine;
pub mod information_schema_columns;
pub mod pg_catalog_tables;
pub mod pg_column_types;
pub mod pg_columns;
pub mod pg_compat;
pub mod pg_functions;
pub mod pg_indexes;
pub mod pg_roles;
pub mod pg_types;
pub mod runner;
pub mod server;
pub mod sqlstate;
pub mod statements;
pub mod storage;
pub mod value_limits;
