#!/usr/bin/env bash
# Streams N generated product texts through `rankql run` (CSV in, embed(), Parquet out)
# and reports throughput and peak RSS, for N/20 and N side by side: with bounded memory
# the peak RSS stays flat while N grows twentyfold.
#
# Usage: [RANKQL_BIN=path] benches/embed_stream.sh [N]   (default 100000; needs `python3 models/fetch.py`)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
# RANKQL_BIN: an already built rankql binary (skips the release build).
rankql="${RANKQL_BIN:-${CARGO_TARGET_DIR:-target}/release/rankql}"
[ -n "${RANKQL_BIN:-}" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for count in $((n / 20)) "$n"; do
  "$rankql" sql --in-memory --format csv \
    "SELECT s AS id, 'Product ' || s || ': ' || repeat('lightweight breathable running shoe for trail and road ', 1 + s % 5) || (s * 7919 % 100003) AS text FROM generate_series(1, $count) AS g(s)" \
    > "$work/texts.csv"
  cat > "$work/job.sql" <<SQL
CREATE EXTERNAL TABLE texts STORED AS CSV LOCATION '$work/texts.csv' OPTIONS ('format.has_header' 'true');
COPY (SELECT id, embed(text) AS vec FROM texts) TO '$work/vectors.parquet' STORED AS PARQUET OPTIONS ('format.max_row_group_size' '8192');
SQL
  start=$(date +%s.%N)
  /usr/bin/time -v "$rankql" run --in-memory "$work/job.sql" 2> "$work/time.txt" > /dev/null &
  timer=$!
  # RSS every minute (stderr), so a long run shows whether memory is flat as it goes.
  ticks=0
  while kill -0 "$timer" 2>/dev/null; do
    sleep 1
    ticks=$((ticks + 1))
    [ $((ticks % 60)) -eq 0 ] || continue
    pid=$(pgrep -f "run --in-memory $work/job.sql" | tail -1 || true)
    rss_now=$(ps -o rss= -p "${pid:-0}" 2>/dev/null | tr -d ' ' || true)
    [ -n "$rss_now" ] && echo "  $count texts, $(printf '%.0f' "$(echo "$(date +%s.%N) - $start" | bc)") s in: RSS $((rss_now / 1024)) MiB" >&2
  done
  wait "$timer"
  end=$(date +%s.%N)
  rss=$(grep "Maximum resident set size" "$work/time.txt" | awk '{print $6}')
  echo "$count texts: $(echo "$count / ($end - $start)" | bc -l | xargs printf '%.1f') texts/s, peak RSS $((rss / 1024)) MiB"
done
