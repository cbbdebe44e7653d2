#!/usr/bin/env bash
# Ingest benchmark: rankql vs PostgreSQL on this machine, in the same run.
#  1. COPY of 1,000,000 events from a CSV file through psql's \copy.
#  2. Single-row INSERTs from 16 connections for 20 s (pgbench, simple protocol).
# Prints rows/s for both and the ratio rankql / PostgreSQL.
#
# Usage: benches/ingest.sh [ROWS] [SECONDS]
# RANKQL_BIN picks the binary (default: a release build in target/release-build).
# Installs Debian's postgresql when missing; runs it on loopback in a temp dir; stops it.
set -euo pipefail
ROWS=${1:-1000000}
SECONDS_INSERT=${2:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
RANKQL_PORT=55432
PG_PORT=55433
trap 'cleanup' EXIT

cleanup() {
  [ -n "${RANKQL_PID:-}" ] && kill "$RANKQL_PID" 2>/dev/null || true
  if [ -n "${PG_BIN:-}" ] && [ -d "$WORK/pg" ]; then
    su postgres -c "$PG_BIN/pg_ctl -D $WORK/pg -m fast stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}

if [ -z "${RANKQL_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=target/release-build cargo build --release --workspace --bins >&2)
  RANKQL_BIN="$ROOT/target/release-build/release/rankql"
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing postgresql from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/postgres | tail -1)")

echo "generating $ROWS events" >&2
python3 - "$WORK/events.csv" "$ROWS" <<'EOF'
import random, sys
path, rows = sys.argv[1], int(sys.argv[2])
kinds = ["view", "view", "view", "click", "cart", "purchase"]
rng = random.Random(7)
with open(path, "w") as out:
    for i in range(rows):
        out.write(f"{i},{rng.randrange(100000)},{rng.randrange(1000000)},{rng.choice(kinds)},"
                  f"2026-11-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}\n")
EOF
SCHEMA="CREATE TABLE events (event_id BIGINT NOT NULL, user_id BIGINT, product_id BIGINT, event_type TEXT, ts TIMESTAMP)"
cat > "$WORK/insert.sql" <<'EOF'
\set id random(1, 2000000000)
\set user random(1, 100000)
INSERT INTO events VALUES (:id, :user, 42, 'click', '2026-11-30 12:00:00');
EOF

# --- rankql -------------------------------------------------------------------------
mkdir -p "$WORK/rankql-data"
RANKQL_LOG=error "$RANKQL_BIN" serve --port $RANKQL_PORT --data-dir "$WORK/rankql-data" &
RANKQL_PID=$!
for _ in $(seq 100); do psql -h 127.0.0.1 -p $RANKQL_PORT -U rankql -d rankql -Atc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
rq() { psql -h 127.0.0.1 -p $RANKQL_PORT -U rankql -d rankql -X -v ON_ERROR_STOP=1 -Atq "$@"; }
rq -c "$SCHEMA"
start=$(date +%s.%N)
rq -c "\\copy events FROM '$WORK/events.csv' CSV"
rankql_copy_s=$(echo "$(date +%s.%N) - $start" | bc)
rankql_copy_rows=$(rq -c "SELECT count(*) FROM events")
rq -c "CREATE TABLE events_small (event_id BIGINT NOT NULL, user_id BIGINT, product_id BIGINT, event_type TEXT, ts TIMESTAMP)"
sed 's/INSERT INTO events /INSERT INTO events_small /' "$WORK/insert.sql" > "$WORK/insert_small.sql"
rankql_tps=$("$PG_BIN/pgbench" -h 127.0.0.1 -p $RANKQL_PORT -U rankql -n -M simple -c 16 -j 4 -T "$SECONDS_INSERT" -f "$WORK/insert_small.sql" rankql 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
rankql_insert_rows=$(rq -c "SELECT count(*) FROM events_small")
rankql_files=$(find "$WORK/rankql-data/tables/events_small" -name '*.parquet' | wc -l)
rankql_active=$(ls "$WORK/rankql-data/tables/events_small/_delta_log" | wc -l)
kill "$RANKQL_PID"; wait "$RANKQL_PID" 2>/dev/null || true; RANKQL_PID=

# --- PostgreSQL ---------------------------------------------------------------------
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg" "$WORK" && chmod 755 "$WORK" && chmod 644 "$WORK"/*.sql "$WORK/events.csv"
su postgres -c "$PG_BIN/initdb -D $WORK/pg -A trust -U postgres" >/dev/null
su postgres -c "$PG_BIN/pg_ctl -D $WORK/pg -o '-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1' -l $WORK/pg/log -w start" >/dev/null
pq() { psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -X -v ON_ERROR_STOP=1 -Atq "$@"; }
pq -c "$SCHEMA"
start=$(date +%s.%N)
pq -c "\\copy events FROM '$WORK/events.csv' CSV"
pg_copy_s=$(echo "$(date +%s.%N) - $start" | bc)
pq -c "CREATE TABLE events_small (event_id BIGINT NOT NULL, user_id BIGINT, product_id BIGINT, event_type TEXT, ts TIMESTAMP)"
pg_tps=$("$PG_BIN/pgbench" -h 127.0.0.1 -p $PG_PORT -U postgres -n -M simple -c 16 -j 4 -T "$SECONDS_INSERT" -f "$WORK/insert_small.sql" postgres 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')

# --- report -------------------------------------------------------------------------
awk -v rows="$ROWS" -v rcs="$rankql_copy_s" -v pcs="$pg_copy_s" -v rt="$rankql_tps" -v pt="$pg_tps" \
    -v rrows="$rankql_copy_rows" -v irows="$rankql_insert_rows" -v files="$rankql_files" -v entries="$rankql_active" 'BEGIN {
  printf "COPY %d events:        rankql %8.0f rows/s (%.1f s, %d rows stored)   PostgreSQL %8.0f rows/s (%.1f s)   ratio %.2f\n", rows, rows/rcs, rcs, rrows, rows/pcs, pcs, (rows/rcs)/(rows/pcs)
  printf "INSERT, 16 connections: rankql %8.0f rows/s   PostgreSQL %8.0f rows/s   ratio %.2f\n", rt, pt, rt/pt
  printf "rankql after the INSERT run: %d rows, %d parquet files written in all (compaction included), %d log entries\n", irows, files, entries
}'
