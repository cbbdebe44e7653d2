//! rankql's integration tests, in one binary (linking DataFusion once).
//!
//! - `slt`: SQL behaviour, from the `.slt` files in `tests/slt/`.
//! - `wire`: the server through tokio-postgres (simple and extended protocol) and raw
//!   sockets (garbage bytes, oversized messages, dropped connections).
//! - `psql`: the real `psql` binary, including `\d` and `\dt`.
//! - `cli`: `rankql sql` and `rankql run` as a user runs them.
//! - `clients`: drivers as users run them (psycopg with pgvector's `register_vector`).
//! - `pipelines`: every `sql/` pipeline on the demo data, with sanity checks.
//! - `embed`: parity with ONNX Runtime's Python API, semantics, batch invariance.
//! - `storage`: durable tables: restart, DROP, concurrent INSERTs, COPY FROM STDIN,
//!   and the crash test (SIGKILL mid-stream).
//! - `crash`: kill -9 at random moments during every write path at once (INSERT with
//!   compaction, COPY, INSERT … SELECT, CREATE TABLE AS, DROP, CREATE OR REPLACE).
//! - `fuzz`: protocol garbage before and after authentication; random SQL over
//!   rankql's functions (a SQLSTATE for every failure, the connection stays usable).
//! - `load`: 64 clients mixing embed, top-k, INSERT and COPY; no lost row.
//! - `security`: passwords, the loopback rule, the role matrix, server files, sessions
//!   per connection, statement_timeout, cancel, the connection limit.
//! - `tls`: psql (verify-full), psycopg and pgjdbc over TLS; certificates that fail.
//! - `vector_index`: HNSW indexes: plans, results against the exact scan, freshness,
//!   restart, a kill mid-build, concurrent clients, `pg_indexes`.
//! - `cluster`: a local Ballista cluster of the binary (scheduler, two executors): the
//!   pipelines, MovieLens and the served demo as in one process; a killed executor; a
//!   scheduler that is down.
//! - `bi_traces`: replays BI tools' catalog queries from ../shared (skipped if absent).

mod bi_traces;
mod cli;
mod clients;
mod cluster;
mod common;
mod crash;
mod embed;
mod fuzz;
mod load;
mod pipelines;
mod psql;
mod security;
mod slt;
mod storage;
mod tls;
mod vector_index;
mod wire;
