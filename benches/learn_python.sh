#!/usr/bin/env bash
# rankql's learning functions (ease_fit, adapter_fit) against the same computation in
# numpy, in one run on the same data. See benches/learn_python.py.
#
# Usage: [RANKQL_BIN=path] benches/learn_python.sh [PAIRS] [EPOCHS]
#        (default 100000 1; needs `python3 sql/eval/fetch_data.py` for MovieLens)
# numpy and pyarrow go into a virtual environment under ~/.cache/rankql-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
rankql="${RANKQL_BIN:-${CARGO_TARGET_DIR:-target}/release/rankql}"
[ -n "${RANKQL_BIN:-}" ] || cargo build --release --quiet
venv="$HOME/.cache/rankql-bench/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import numpy, pyarrow" 2>/dev/null || "$venv/bin/pip" install --quiet numpy pyarrow
exec "$venv/bin/python" benches/learn_python.py "$rankql" "${1:-100000}" "${2:-1}"
