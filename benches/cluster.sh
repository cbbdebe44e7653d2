#!/usr/bin/env bash
# Cluster scaling, in one run: `embed` over TEXTS product texts and a cosine top-10 over
# VECTORS stored vectors, through `rankql serve` (psql's \timing), in one process and
# on a local Ballista cluster of 1, 2, 4, 8 … one-core executors (as many as the machine
# has cores) plus one executor with every core. Each executor is pinned to its own
# cores (taskset), so an executor's share of the machine is what it is given. The
# embedding cache is off everywhere: every text is embedded, none is served from memory.
#
#   RANKQL_BIN=target/release/rankql bash benches/cluster.sh
#   TEXTS=20000 VECTORS=5000000 DIM=64 (defaults); PYTHON=python3 with numpy and pyarrow
#
# Prints, per configuration: seconds, throughput, the ratio to one process, and the
# scaling efficiency (throughput of k one-core executors / k × one one-core executor).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${RANKQL_BIN:-${CARGO_TARGET_DIR:-target}/release/rankql}"
TEXTS="${TEXTS:-20000}"
VECTORS="${VECTORS:-5000000}"
DIM="${DIM:-64}"
PYTHON="${PYTHON:-python3}"
CORES="$(nproc)"
MODELS="${RANKQL_MODELS:-$PWD/models/cache}"
export RANKQL_MODELS="$MODELS" RANKQL_LOG="${RANKQL_LOG:-warn}"

[ -x "$BIN" ] || { echo "build the release binary first: cargo build --release ($BIN)" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is needed" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
data="$work/data"
mkdir -p "$data"

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

echo "preparing $TEXTS texts and $VECTORS vectors of $DIM dimensions in $data"
"$BIN" sql --demo --data-dir "$data" \
  "COPY (SELECT row_number() OVER (ORDER BY p.product_id, g.value) AS id,
                p.title || ' ' || p.description || ' (variant ' || g.value || ')' AS t
         FROM products p CROSS JOIN generate_series(1, CAST(ceil($TEXTS / 300.0) AS BIGINT)) g
         ORDER BY id LIMIT $TEXTS) TO '$data/texts.parquet'" >/dev/null
# A catalogue of many files, as a big one is: the cluster runs one task per file (a small
# file is not split), so the texts are spread over 16 files like the vectors.
"$PYTHON" - "$data" <<'EOF'
import os, sys
import pyarrow.parquet as pq
data = sys.argv[1]
table = pq.read_table(f"{data}/texts.parquet")
os.makedirs(f"{data}/texts", exist_ok=True)
files = 16
for f in range(files):
    lo, hi = table.num_rows * f // files, table.num_rows * (f + 1) // files
    pq.write_table(table.slice(lo, hi - lo), f"{data}/texts/part-{f:02}.parquet")
os.remove(f"{data}/texts.parquet")
EOF
"$PYTHON" - "$data/vecs" "$VECTORS" "$DIM" <<'EOF'
import sys
import numpy as np
import pyarrow as pa
import os
import pyarrow.parquet as pq
out, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
files = 16
for f in range(files):
    lo, hi = n * f // files, n * (f + 1) // files
    values = rng.standard_normal((hi - lo) * dim, dtype=np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(values), dim)
    table = pa.table({"id": pa.array(np.arange(lo, hi, dtype=np.int64)), "v": vectors})
    pq.write_table(table, f"{out}/part-{f:02}.parquet", row_group_size=131072)
EOF
query_vector="$("$PYTHON" -c "import numpy as np; r=np.random.default_rng(1).standard_normal($DIM); print('[' + ','.join(f'{x:.5f}' for x in r) + ']')")"

EMBED_WARM="SELECT count(embed(t)) FROM texts WHERE id % 100 = 0"
EMBED="SELECT count(embed(t)) FROM texts"
TOPK="SELECT id FROM vecs ORDER BY cosine(v, '$query_vector') DESC LIMIT 10"

# Seconds of the last statement psql timed.
timed() {
  local port="$1"; shift
  local args=(-h 127.0.0.1 -p "$port" -U rankql -d rankql -X -q -At -c '\timing on')
  for statement in "$@"; do args+=(-c "$statement"); done
  psql "${args[@]}" | grep '^Time:' | tail -1 | awk '{printf "%.3f", $2 / 1000}'
}

# Starts the server (and, for a cluster, the scheduler and EXECUTORS executors of
# PER cores each), measures both workloads, stops everything. Prints "embed_s topk_s".
measure() {
  local executors="$1" per="$2" cluster_args=()
  if [ "$executors" -gt 0 ]; then
    local scheduler_port; scheduler_port="$(free_port)"
    "$BIN" scheduler --port "$scheduler_port" >"$work/scheduler.log" 2>&1 &
    pids+=($!)
    wait_port "$scheduler_port"
    for ((i = 0; i < executors; i++)); do
      local first last flight grpc
      first=$((i * per))
      last=$((i * per + per - 1))
      flight="$(free_port)"
      grpc="$(free_port)"
      taskset -c "$first-$last" "$BIN" executor --scheduler "127.0.0.1:$scheduler_port" \
        --concurrency "$per" --port "$flight" --grpc-port "$grpc" --embed-cache 0 \
        --work-dir "$work" >"$work/executor-$i.log" 2>&1 &
      pids+=($!)
      wait_port "$flight"
    done
    cluster_args=(--cluster "127.0.0.1:$scheduler_port")
  fi
  local port; port="$(free_port)"
  "$BIN" serve --port "$port" --data-dir "$data" --embed-cache 0 "${cluster_args[@]}" \
    >"$work/serve.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  local embed topk
  embed="$(timed "$port" "$EMBED_WARM" "$EMBED")"
  topk="$(timed "$port" "$TOPK" "$TOPK")"
  stop_all
  echo "$embed $topk"
}

printf '%-28s %10s %12s %8s %10s %10s %14s %8s %10s\n' configuration cores "embed s" texts/s "vs 1 proc" efficiency "top-k s" "vs 1 proc" efficiency
read -r base_embed base_topk <<<"$(measure 0 0)"
row() {
  printf '%-28s %10s %12s %8.0f %10s %10s %14s %8s %10s\n' "$1" "$2" "$3" "$(echo "$TEXTS / $3" | bc -l)" \
    "$(echo "scale=2; $base_embed / $3" | bc -l)" "$4" "$5" "$(echo "scale=2; $base_topk / $5" | bc -l)" "$6"
}
row "one process" "$CORES" "$base_embed" "-" "$base_topk" "-"
one_embed="" one_topk=""
for ((k = 1; k <= CORES; k *= 2)); do
  read -r embed topk <<<"$(measure "$k" 1)"
  if [ "$k" -eq 1 ]; then one_embed="$embed"; one_topk="$topk"; fi
  row "cluster: $k × 1-core executor" "$k" "$embed" \
    "$(echo "scale=2; $one_embed / ($k * $embed)" | bc -l)" "$topk" \
    "$(echo "scale=2; $one_topk / ($k * $topk)" | bc -l)"
done
read -r embed topk <<<"$(measure 1 "$CORES")"
row "cluster: 1 × $CORES-core executor" "$CORES" "$embed" "-" "$topk" "-"
