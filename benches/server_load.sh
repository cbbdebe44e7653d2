#!/usr/bin/env bash
# The team server under load, measured with pgbench (PostgreSQL's own load tool), three
# ways in one run on the same machine:
#   1. trusted loopback (no users, plain text)      — the baseline
#   2. SCRAM-SHA-256 authentication, plain text
#   3. SCRAM-SHA-256 authentication over TLS
# Each runs CLIENTS clients for LOAD_SECONDS seconds of a mixed load — embed() search, top-k
# cosine over stored vectors, an aggregate, single-row INSERTs — and reports
# transactions/s, p50/p99 latency (from pgbench's per-transaction log) and the server's
# peak RSS (VmHWM). Then the cost of a login: pgbench -C (a new connection for every
# transaction) with trust, with SCRAM, and with SCRAM over TLS, in connections/s.
# Every INSERT is counted and checked against the table at the end.
#
# Usage: bash benches/server_load.sh            (RANKQL_BIN to reuse a built binary;
#        CLIENTS=64 LOAD_SECONDS=30 LOGIN_SECONDS=10 to change the load)
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
SECONDS_EACH=${LOAD_SECONDS:-30}
LOGIN_SECONDS=${LOGIN_SECONDS:-10}
PORT=${PORT:-55433}
if [ -z "${RANKQL_BIN:-}" ]; then
  cargo build --release --quiet
  RANKQL_BIN="${CARGO_TARGET_DIR:-target}/release/rankql"
fi
command -v pgbench >/dev/null || { echo "pgbench is needed (apt-get install postgresql-contrib or postgresql-client)"; exit 1; }
python3 models/fetch.py >/dev/null

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

cat >"$work/embed.sql" <<'SQL'
\set q random(1, 300)
SELECT product_id FROM products ORDER BY cosine(embed(title), embed('running shoes for trail ' || :q)) DESC LIMIT 5;
SQL
cat >"$work/topk.sql" <<'SQL'
\set p random(1, 300)
SELECT b.product_id FROM product_vectors a, product_vectors b WHERE a.product_id = :p ORDER BY cosine(a.v, b.v) DESC LIMIT 10;
SQL
cat >"$work/aggregate.sql" <<'SQL'
SELECT category, count(*), avg(price) FROM products GROUP BY category;
SQL
cat >"$work/insert.sql" <<'SQL'
\set u random(1, 200)
\set p random(1, 300)
INSERT INTO clicks VALUES (:u, :p);
SQL
echo "SELECT 1;" >"$work/select1.sql"

# Starts the server on a fresh data dir: $1 = "trust" | "scram"; extra args follow.
start_server() {
  local mode=$1
  shift
  rm -rf "$work/data"
  if [ "$mode" = scram ]; then
    echo "bench-pw" | "$RANKQL_BIN" user add bench --superuser --password-stdin --data-dir "$work/data" >/dev/null
  fi
  RANKQL_LOG=warn "$RANKQL_BIN" serve --demo --data-dir "$work/data" --port "$PORT" \
    --max-connections 200 "$@" 2>"$work/server.log" &
  server_pid=$!
  local up=no
  for _ in $(seq 1 150); do
    if PGPASSWORD=bench-pw psql -X -q -h 127.0.0.1 -p "$PORT" -U bench -d rankql -c "SELECT 1" >/dev/null 2>&1; then
      up=yes
      break
    fi
    sleep 0.2
  done
  [ "$up" = yes ] || { echo "the server did not start ($mode $*):" >&2; cat "$work/server.log" >&2; exit 1; }
  PGPASSWORD=bench-pw psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U bench -d rankql -c \
    "CREATE TABLE product_vectors AS SELECT product_id, embed(title || ' ' || description) AS v FROM products" \
    -c "CREATE TABLE clicks (user_id BIGINT, product_id BIGINT)" >/dev/null
}

stop_server() {
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  echo "$hwm"
}

# Runs the mixed load; prints "tps p50_ms p99_ms inserts_ok".
mixed_load() {
  rm -f "$work"/log*
  local out
  out=$(PGPASSWORD=bench-pw pgbench -n -M simple -h 127.0.0.1 -p "$PORT" -U bench rankql \
    -c "$CLIENTS" -j 4 -T "$SECONDS_EACH" -l --log-prefix="$work/log" \
    -f "$work/embed.sql@1" -f "$work/topk.sql@3" -f "$work/aggregate.sql@3" -f "$work/insert.sql@3" 2>&1)
  local failed
  failed=$(echo "$out" | awk -F': *' '/number of failed transactions/ {print $2+0; exit}')
  [ "${failed:-0}" = 0 ] || { echo "$out" >&2; echo "pgbench reported failed transactions" >&2; exit 1; }
  local inserted
  inserted=$(cat "$work"/log* | awk '$4 == 3 {n++} END {print n+0}')
  local stored
  stored=$(PGPASSWORD=bench-pw psql -X -A -t -h 127.0.0.1 -p "$PORT" -U bench -d rankql -c "SELECT count(*) FROM clicks")
  [ "$stored" = "$inserted" ] || { echo "lost rows: $inserted INSERTs acknowledged, $stored stored" >&2; exit 1; }
  local tps
  tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
  cat "$work"/log* | awk '{print $3/1000}' | sort -n | awk -v tps="$tps" -v rows="$stored" \
    '{a[NR]=$1} END {printf "%.0f %.1f %.1f %d\n", tps, a[int(NR*0.5)], a[int(NR*0.99)], rows}'
}

# Connections per second with a new connection for every transaction.
logins() {
  PGPASSWORD=bench-pw pgbench -n -C -M simple -h 127.0.0.1 -p "$PORT" -U bench rankql \
    -c 8 -j 2 -T "$LOGIN_SECONDS" -f "$work/select1.sql" 2>&1 | awk '/^tps/ {printf "%.0f\n", $3; exit}'
}

printf "%-24s %10s %9s %9s %10s %14s\n" setup "tx/s" "p50 ms" "p99 ms" "peak RSS" "INSERTs (=rows)"
declare -A login_rate
for setup in trust scram scram+tls; do
  case $setup in
    trust) export PGSSLMODE=disable; start_server trust ;;
    scram) export PGSSLMODE=disable; start_server scram ;;
    scram+tls) export PGSSLMODE=require; start_server scram --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --tls required ;;
  esac
  read -r tps p50 p99 rows < <(mixed_load)
  login_rate[$setup]=$(logins)
  hwm=$(stop_server)
  printf "%-24s %10s %9s %9s %8d MB %14s\n" "$setup" "$tps" "$p50" "$p99" "$((hwm / 1024))" "$rows"
done
echo
printf "logins (pgbench -C, 8 clients): trust %s/s, SCRAM %s/s, SCRAM+TLS %s/s\n" \
  "${login_rate[trust]}" "${login_rate[scram]}" "${login_rate[scram+tls]}"
