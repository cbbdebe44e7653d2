#!/usr/bin/env bash
# Ingest benchmark: rankql vs PostgreSQL on this machine, in the same run, at the same
# durability, in two pairs:
#   on:  rankql --synchronous-commit on   vs PostgreSQL synchronous_commit = on  (fsync)
#   off: rankql --synchronous-commit off  vs PostgreSQL synchronous_commit = off
# For each pair:
#  1. COPY of ROWS events from a CSV file through psql's \copy.
#  2. Single-row INSERTs from 16 connections for SECONDS (pgbench, simple protocol).
# Every row count is checked: COPY must store ROWS rows, the INSERT run exactly the
# transactions pgbench reports as processed (with none failed); a mismatch fails the run.
# Prints rows/s for both systems and the ratio rankql / PostgreSQL, per pair.
#
# Usage: benches/ingest.sh [ROWS] [SECONDS]
# RANKQL_BIN picks the binary (default: a release build in target/release-build).
# Installs Debian's postgresql when missing; runs it on loopback in a temp dir; stops it.
set -euo pipefail
ROWS=${1:-1000000}
SECONDS_INSERT=${2:-20}
CLIENTS=16
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
RANKQL_PORT=55432
PG_PORT=55433
trap 'cleanup' EXIT

cleanup() {
  [ -n "${RANKQL_PID:-}" ] && kill "$RANKQL_PID" 2>/dev/null || true
  stop_pg
  rm -rf "$WORK"
}

fail() { echo "ingest.sh: $*" >&2; exit 1; }

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
COLUMNS_SQL="(event_id BIGINT NOT NULL, user_id BIGINT, product_id BIGINT, event_type TEXT, ts TIMESTAMP)"
cat > "$WORK/insert.sql" <<'EOF'
\set id random(1, 2000000000)
\set user random(1, 100000)
INSERT INTO events_small VALUES (:id, :user, 42, 'click', '2026-11-30 12:00:00');
EOF
chmod 755 "$WORK" && chmod 644 "$WORK"/*.sql "$WORK/events.csv"

# Runs one system's COPY and INSERT runs. $1: label, $2: psql function, $3: port,
# $4: pgbench user, $5: database. Sets copy_s, tps.
measure() {
  local label=$1 client=$2 port=$3 user=$4 db=$5
  $client -c "CREATE TABLE events $COLUMNS_SQL"
  local start
  start=$(date +%s.%N)
  $client -c "\\copy events FROM '$WORK/events.csv' CSV"
  copy_s=$(echo "$(date +%s.%N) - $start" | bc)
  local stored
  stored=$($client -c "SELECT count(*) FROM events")
  [ "$stored" = "$ROWS" ] || fail "$label: COPY of $ROWS rows stored $stored"
  $client -c "CREATE TABLE events_small $COLUMNS_SQL"
  "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -U "$user" -n -M simple -c $CLIENTS -j 4 \
    -T "$SECONDS_INSERT" -f "$WORK/insert.sql" "$db" > "$WORK/pgbench.out" 2>&1 \
    || { cat "$WORK/pgbench.out" >&2; fail "$label: pgbench failed"; }
  tps=$(awk '/^tps/ {print $3; exit}' "$WORK/pgbench.out")
  local processed failed
  processed=$(awk -F': ' '/number of transactions actually processed/ {split($2, a, "/"); print a[1]}' "$WORK/pgbench.out")
  failed=$(awk -F': ' '/number of failed transactions/ {print $2+0}' "$WORK/pgbench.out")
  [ "${failed:-0}" = "0" ] || fail "$label: $failed INSERTs failed"
  stored=$($client -c "SELECT count(*) FROM events_small")
  [ "$stored" = "$processed" ] || fail "$label: pgbench acknowledged $processed INSERTs, table holds $stored rows"
  echo "$label: COPY $ROWS rows in $copy_s s; INSERT $processed rows, $tps/s" >&2
}

# --- rankql -------------------------------------------------------------------------
rq() { psql -h 127.0.0.1 -p $RANKQL_PORT -U rankql -d rankql -X -v ON_ERROR_STOP=1 -Atq "$@"; }
run_rankql() {
  local mode=$1
  rm -rf "$WORK/rankql-data" && mkdir -p "$WORK/rankql-data"
  RANKQL_LOG=error "$RANKQL_BIN" serve --port $RANKQL_PORT --data-dir "$WORK/rankql-data" \
    --synchronous-commit "$mode" &
  RANKQL_PID=$!
  for _ in $(seq 100); do rq -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
  measure "rankql synchronous_commit=$mode" rq $RANKQL_PORT rankql rankql
  kill "$RANKQL_PID"; wait "$RANKQL_PID" 2>/dev/null || true; RANKQL_PID=
}

# --- PostgreSQL ---------------------------------------------------------------------
pq() { psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -X -v ON_ERROR_STOP=1 -Atq "$@"; }
stop_pg() {
  if [ -n "${PG_BIN:-}" ] && [ -f "$WORK/pg/postmaster.pid" ]; then
    su postgres -c "$PG_BIN/pg_ctl -D $WORK/pg -m fast -w stop" >/dev/null 2>&1 || true
  fi
}
run_pg() {
  local mode=$1
  stop_pg
  rm -rf "$WORK/pg" && mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
  su postgres -c "$PG_BIN/initdb -D $WORK/pg -A trust -U postgres" >/dev/null
  su postgres -c "$PG_BIN/pg_ctl -D $WORK/pg -o '-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c synchronous_commit=$mode -c fsync=on' -l $WORK/pg/log -w start" >/dev/null
  [ "$(pq -c 'SHOW synchronous_commit')" = "$mode" ] || fail "PostgreSQL did not take synchronous_commit=$mode"
  measure "PostgreSQL synchronous_commit=$mode" pq $PG_PORT postgres postgres
  stop_pg
}

declare -A copy_seconds insert_tps
for mode in on off; do
  run_rankql "$mode"; copy_seconds[rankql_$mode]=$copy_s; insert_tps[rankql_$mode]=$tps
  run_pg "$mode"; copy_seconds[pg_$mode]=$copy_s; insert_tps[pg_$mode]=$tps
done

# --- report -------------------------------------------------------------------------
echo "ingest: $ROWS-row COPY, $CLIENTS-connection single-row INSERT for $SECONDS_INSERT s; every row count checked"
for mode in on off; do
  awk -v mode="$mode" -v rows="$ROWS" -v rcs="${copy_seconds[rankql_$mode]}" -v pcs="${copy_seconds[pg_$mode]}" \
      -v rt="${insert_tps[rankql_$mode]}" -v pt="${insert_tps[pg_$mode]}" 'BEGIN {
    printf "synchronous_commit=%-3s COPY:   rankql %8.0f rows/s   PostgreSQL %8.0f rows/s   ratio %.2f\n", mode, rows/rcs, rows/pcs, (rows/rcs)/(rows/pcs)
    printf "synchronous_commit=%-3s INSERT: rankql %8.0f rows/s   PostgreSQL %8.0f rows/s   ratio %.2f\n", mode, rt, pt, rt/pt
  }'
done
