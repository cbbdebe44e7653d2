#!/usr/bin/env bash
# Small-query throughput: rankql vs PostgreSQL on this machine, in the same run.
#   select1: `SELECT 1` over the simple protocol (what a health check or a driver's
#            connection test sends);
#   select1p: `SELECT 1` prepared (pgbench -M prepared), as drivers that use the extended
#            protocol for everything (psycopg 3, pgjdbc, Npgsql) send it;
#   lookup:  `SELECT product_id, title, price FROM products WHERE product_id = $1`, a
#            prepared statement (pgbench -M prepared: Parse once, then Bind/Execute), on
#            a 100,000-row table (rankql: a durable table; PostgreSQL: a primary key).
# Each with 1 and 16 clients for SECONDS (pgbench). Prints queries/s for both systems and
# the ratio rankql / PostgreSQL. Issue 13's target is a ratio of at least 0.8.
#
# Usage: [RANKQL_BIN=path] benches/small_queries.sh [SECONDS]   (default 10)
# Installs Debian's postgresql when missing; runs it on loopback in a temp dir; stops it.
set -euo pipefail
SECONDS_RUN=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
RANKQL_PORT=55442
PG_PORT=55443
ROWS=100000
trap 'cleanup' EXIT

cleanup() {
  [ -n "${RANKQL_PID:-}" ] && kill "$RANKQL_PID" 2>/dev/null || true
  if [ -n "${PG_BIN:-}" ] && [ -f "$WORK/pg/postmaster.pid" ]; then
    su postgres -c "$PG_BIN/pg_ctl -D $WORK/pg -m fast -w stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}

fail() { echo "small_queries.sh: $*" >&2; exit 1; }

if [ -z "${RANKQL_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet >&2)
  RANKQL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rankql"
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing postgresql from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/postgres | tail -1)")

printf 'SELECT 1;\n' > "$WORK/select1.sql"
printf '\\set id random(0, %d)\nSELECT product_id, title, price FROM products WHERE product_id = :id;\n' \
  $((ROWS - 1)) > "$WORK/lookup.sql"
chmod 755 "$WORK" && chmod 644 "$WORK"/*.sql

# Runs pgbench; $1: port, $2: user, $3: database, $4: script, $5: protocol, $6: clients.
qps() {
  local out="$WORK/pgbench.out"
  "$PG_BIN/pgbench" -h 127.0.0.1 -p "$1" -U "$2" -n -M "$5" -c "$6" -j "$6" -T "$SECONDS_RUN" \
    -f "$WORK/$4" "$3" > "$out" 2>&1 || { cat "$out" >&2; fail "pgbench $4 failed"; }
  local failed
  failed=$(awk -F': ' '/number of failed transactions/ {print $2+0}' "$out")
  [ "${failed:-0}" = "0" ] || fail "$4: $failed queries failed"
  awk '/^tps/ {printf "%.0f", $3; exit}' "$out"
}

declare -A result
measure() {
  local system=$1 port=$2 user=$3 db=$4
  for clients in 1 16; do
    result[$system,select1,$clients]=$(qps "$port" "$user" "$db" select1.sql simple "$clients")
    result[$system,select1p,$clients]=$(qps "$port" "$user" "$db" select1.sql prepared "$clients")
    result[$system,lookup,$clients]=$(qps "$port" "$user" "$db" lookup.sql prepared "$clients")
    echo "$system, $clients client(s): SELECT 1 ${result[$system,select1,$clients]}/s, prepared ${result[$system,select1p,$clients]}/s, lookup ${result[$system,lookup,$clients]}/s" >&2
  done
}

# --- rankql -------------------------------------------------------------------------
rq() { psql -h 127.0.0.1 -p $RANKQL_PORT -U rankql -d rankql -X -v ON_ERROR_STOP=1 -Atq "$@"; }
mkdir -p "$WORK/rankql-data"
RANKQL_LOG=error "$RANKQL_BIN" serve --port $RANKQL_PORT --data-dir "$WORK/rankql-data" &
RANKQL_PID=$!
for _ in $(seq 100); do rq -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
rq -c "CREATE TABLE products AS SELECT value AS product_id, 'product ' || value AS title, CAST(value % 1000 AS DOUBLE) AS price FROM range(0, $ROWS)"
[ "$(rq -c "SELECT title FROM products WHERE product_id = 42")" = "product 42" ] || fail "rankql table"
measure rankql $RANKQL_PORT rankql rankql
kill "$RANKQL_PID"; wait "$RANKQL_PID" 2>/dev/null || true; RANKQL_PID=

# --- PostgreSQL ---------------------------------------------------------------------
pq() { psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -X -v ON_ERROR_STOP=1 -Atq "$@"; }
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
su postgres -c "$PG_BIN/initdb -D $WORK/pg -A trust -U postgres" >/dev/null
su postgres -c "$PG_BIN/pg_ctl -D $WORK/pg -o '-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1' -l $WORK/pg/log -w start" >/dev/null
pq -c "CREATE TABLE products (product_id BIGINT PRIMARY KEY, title TEXT, price DOUBLE PRECISION)"
pq -c "INSERT INTO products SELECT g, 'product ' || g, g % 1000 FROM generate_series(0, $((ROWS - 1))) g"
pq -c "ANALYZE products"
measure PostgreSQL $PG_PORT postgres postgres

# --- report -------------------------------------------------------------------------
echo "small queries, $SECONDS_RUN s per run, queries/s (ratio rankql / PostgreSQL; target >= 0.8):"
for query in select1 select1p lookup; do
  for clients in 1 16; do
    awk -v q="$query" -v c="$clients" -v r="${result[rankql,$query,$clients]}" -v p="${result[PostgreSQL,$query,$clients]}" \
      'BEGIN { printf "%-8s %2d client(s): rankql %8d   PostgreSQL %8d   ratio %.2f\n", q, c, r, p, r / p }'
  done
done
