//! rankql's integration tests, in one binary (linking DataFusion once).
//!
//! - `slt`: SQL behaviour, from the `.slt` files in `tests/slt/`.
//! - `wire`: the server through tokio-postgres (simple and extended protocol) and raw
//!   sockets (garbage bytes, oversized messages, dropped connections).
//! - `psql`: the real `psql` binary, including `\d` and `\dt`.
//! - `cli`: `rankql sql` and `rankql run` as a user runs them.
//! - `pipelines`: every `sql/` pipeline on the demo data, with sanity checks.
//! - `embed`: parity with ONNX Runtime's Python API, semantics, batch invariance.
//! - `storage`: durable tables: restart, DROP, concurrent INSERTs, COPY FROM STDIN,
//!   and the crash test (SIGKILL mid-stream).
//! - `bi_traces`: replays BI tools' catalog queries from ../shared (skipped if absent).

mod bi_traces;
mod cli;
mod common;
mod embed;
mod pipelines;
mod psql;
mod slt;
mod storage;
mod wire;
