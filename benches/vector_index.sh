#!/usr/bin/env bash
# rankql's HNSW index against its own exact scan and DuckDB's `vss` HNSW, in one run on
# the same clustered vectors (see benches/vector_index.py for what is measured).
#
# Usage: [RANKQL_BIN=path] benches/vector_index.sh [ROWS] [DIM] [minilm]   (default 1000000 384;
#        minilm: real MiniLM embeddings of product titles, needs `python3 models/fetch.py`)
# Python packages (numpy, pyarrow, duckdb==1.5.5, duckdb-extension-vss, psycopg) go into a
# virtual environment under ~/.cache/rankql-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
rankql="${RANKQL_BIN:-${CARGO_TARGET_DIR:-target}/release/rankql}"
[ -n "${RANKQL_BIN:-}" ] || cargo build --release --quiet
venv="$HOME/.cache/rankql-bench/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy pyarrow duckdb==1.5.5 duckdb-extension-vss==1.5.5 "psycopg[binary]"
fi
exec "$venv/bin/python" benches/vector_index.py "$rankql" "${1:-1000000}" "${2:-384}" ${3:+"$3"}
