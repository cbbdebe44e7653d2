"""rankql's HNSW index vs rankql's exact scan vs DuckDB's `vss` HNSW, in one run.

Data: ROWS clustered, low-rank DIM-d unit vectors (as real embeddings are: 2,000 cluster
centres in a 48-d latent space, mapped to DIM dimensions, plus noise) — never uniform
random, where every HNSW's recall collapses. Queries: 100 fresh vectors from the same
distribution; truth: numpy's exact cosine top-10.

Measured, each on the same data in this run:
- build: CREATE INDEX wall time (m = 16, ef_construction = 64 for both), index size on
  disk (rankql) and the server's resident memory before/after (rankql);
- recall@10 and queries/s at ef_search 40 / 100 / 200, one client (rankql over the wire
  with psycopg; DuckDB in-process, which flatters it), and 16 concurrent rankql clients
  (16 DuckDB cursors on one HNSW index crash DuckDB 1.5.5's vss);
- rankql's exact scan (`ORDER BY (v <=> q) + 0`, which no rule rewrites);
- a filtered top-10 (`WHERE bucket = 3`, 10% of rows): rows returned and recall;
- the all-users job: `nearest(…)` top-10 for 2,000 users through the index, against
  its exact ranking of 50 of them.

With `minilm` as a fourth argument the vectors are instead real all-MiniLM-L6-v2
embeddings (made by rankql's `embed()`) of ROWS distinct product titles (brand, adjective,
colour, material, product, use), and the queries and users are further titles.

Usage: vector_index.py RANKQL_BINARY ROWS DIM [minilm] (run through benches/vector_index.sh).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import duckdb
import duckdb_extension_vss
import numpy as np
import psycopg

K = 10
QUERIES = 100
CLIENTS = 16
EF_VALUES = (40, 100, 200)
USERS = 2000
USERS_EXACT = 50


def clustered(rows, dim, seed):
    """Unit vectors around 2,000 centres of a 48-d latent space mapped to `dim` dims."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).standard_normal((48, dim)).astype(np.float32)
    centres = np.random.default_rng(1).standard_normal((2000, 48)).astype(np.float32)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        latent = centres[rng.integers(0, len(centres), n)]
        latent = latent + 0.35 * rng.standard_normal((n, 48)).astype(np.float32)
        block = latent @ basis + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
        out[start:start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def literal(vector):
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


def recall(found, truth):
    return sum(len(set(f) & set(t)) for f, t in zip(found, truth)) / (K * len(truth))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


def timed_queries(run, queries):
    started = time.perf_counter()
    results = [run(q) for q in queries]
    return results, len(queries) / (time.perf_counter() - started)


def concurrent_qps(make_runner, queries, rounds=2):
    """Queries/s of CLIENTS threads, each with its own connection, each running every
    query `rounds` times."""
    runners = [make_runner() for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS + 1)

    def work(run):
        barrier.wait()
        for _ in range(rounds):
            for q in queries:
                run(q)

    threads = [threading.Thread(target=work, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return CLIENTS * rounds * len(queries) / (time.perf_counter() - started)


def write_parquet(path, vectors):
    """The vectors as Parquet (id, bucket = id % 10, v), read by both engines. pyarrow
    runs in a child process: loaded beside psycopg's libpq it aborts the interpreter."""
    raw = path + ".f32"
    vectors.tofile(raw)
    rows, dim = vectors.shape
    script = f"""
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
v = np.fromfile({raw!r}, dtype=np.float32)
ids = np.arange({rows}, dtype=np.int64)
table = pa.table({{"id": ids, "bucket": ids % 10,
                   "v": pa.FixedSizeListArray.from_arrays(pa.array(v), {dim})}})
pq.write_table(table, {path!r}, row_group_size=100_000, compression="none")
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    os.remove(raw)


def start_rankql(binary, data_dir):
    port = free_port()
    log = open(os.path.join(data_dir, "..", "rankql.log"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--port", str(port), "--data-dir", data_dir],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "RANKQL_LOG": "info"},
    )
    for _ in range(600):
        try:
            psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
            return server, port
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError("rankql did not start")


def bench_rankql(binary, work, parquet, queries, truth, filtered_truth, users):
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir)
    server, port = start_rankql(binary, data_dir)
    connect = lambda: psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    )
    results = {}
    try:
        con = connect()
        con.execute(
            f"CREATE EXTERNAL TABLE src STORED AS PARQUET LOCATION '{parquet}'"
        )
        started = time.perf_counter()
        con.execute("CREATE TABLE vecs AS SELECT id, bucket, v FROM src")
        results["load_s"] = time.perf_counter() - started
        # Warm the table cache (decoded data files), as the exact-scan figures assume.
        con.execute("SELECT count(*) FROM vecs WHERE v IS NOT NULL").fetchall()
        rss_before = rss_mib(server.pid)
        started = time.perf_counter()
        con.execute(
            "CREATE INDEX vecs_v ON vecs USING hnsw (v vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        results["build_s"] = time.perf_counter() - started
        results["disk_mib"] = dir_mib(os.path.join(data_dir, "tables", "vecs", "_rankql_index"))

        def runner(sql, conn=None):
            conn = conn or connect()
            return lambda q: [r[0] for r in conn.execute(sql.format(q=literal(q))).fetchall()]

        exact = runner("SELECT id FROM vecs ORDER BY (v <=> '{q}') + 0 LIMIT 10", con)
        found, qps = timed_queries(exact, queries[:10])
        results["exact"] = (recall(found, truth[:10]), qps)
        for ef in EF_VALUES:
            con.execute(f"SET hnsw.ef_search = {ef}")
            search = runner("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 10", con)
            search(queries[0])
            found, qps = timed_queries(search, queries)

            def make(ef=ef):
                c = connect()
                c.execute(f"SET hnsw.ef_search = {ef}")
                return runner("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 10", c)

            results[f"ef{ef}"] = (recall(found, truth), qps, concurrent_qps(make, queries[:25]))
        results["rss_index_mib"] = rss_mib(server.pid) - rss_before
        con.execute("SET hnsw.ef_search = 100")
        filtered = runner(
            "SELECT id FROM vecs WHERE bucket = 3 ORDER BY v <=> '{q}' LIMIT 10", con
        )
        found, qps = timed_queries(filtered, queries)
        results["filtered"] = (
            min(len(f) for f in found), recall(found, filtered_truth), qps
        )
        plan = con.execute(
            f"EXPLAIN SELECT id FROM vecs ORDER BY v <=> '{literal(queries[0])}' LIMIT 10"
        ).fetchall()
        assert any("VectorSearchExec" in str(row) for row in plan), plan
        # The all-users job: every user's top 10 at once through the index (ef_search 40),
        # against the exact ranking of the first USERS_EXACT users. For unit vectors L2
        # orders as cosine does, and with no L2 index `nearest(…, 'l2')` ranks exactly.
        user_parquet, user_truth = users
        con.execute(f"CREATE EXTERNAL TABLE usrc STORED AS PARQUET LOCATION '{user_parquet}'")
        con.execute("CREATE TABLE users AS SELECT id, v FROM usrc")
        con.execute(f"CREATE TABLE some_users AS SELECT id, v FROM usrc WHERE id < {USERS_EXACT}")
        con.execute("SET hnsw.ef_search = 40")
        job = "SELECT query_id, neighbour_id FROM nearest('{t}', 'id', 'v', 'vecs', 'id', 'v', 10{m})"
        started = time.perf_counter()
        rows = con.execute(job.format(t="users", m="")).fetchall()
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        exact_rows = con.execute(job.format(t="some_users", m=", 'l2'")).fetchall()
        exact_s = time.perf_counter() - started
        found = {}
        for user, product in rows:
            found.setdefault(user, []).append(product)
        exact_found = {}
        for user, product in exact_rows:
            exact_found.setdefault(user, []).append(product)
        results["all_users"] = (
            len(user_truth) / index_s,
            recall([found.get(u, []) for u in range(len(user_truth))], user_truth),
            USERS_EXACT / exact_s,
            recall([exact_found.get(u, []) for u in range(USERS_EXACT)], user_truth[:USERS_EXACT]),
        )
    finally:
        server.terminate()
        server.wait()
    return results


def bench_duckdb(parquet, dim, queries, truth, filtered_truth):
    extension = os.path.join(
        os.path.dirname(duckdb_extension_vss.__file__), "extensions", f"v{duckdb.__version__}",
        "vss.duckdb_extension",
    )
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension}'")
    con.execute(
        f"CREATE TABLE vecs AS SELECT id, bucket, v::FLOAT[{dim}] AS v FROM read_parquet('{parquet}')"
    )
    results = {}
    started = time.perf_counter()
    con.execute(
        "CREATE INDEX vecs_v ON vecs USING HNSW (v) "
        "WITH (metric = 'cosine', M = 16, ef_construction = 64)"
    )
    results["build_s"] = time.perf_counter() - started
    sql = f"SELECT id FROM vecs ORDER BY array_cosine_distance(v, $1::FLOAT[{dim}]) LIMIT 10"

    def runner(conn, query_sql=sql):
        return lambda q: [r[0] for r in conn.execute(query_sql, [q.tolist()]).fetchall()]

    plan = con.execute("EXPLAIN " + sql, [queries[0].tolist()]).fetchall()
    assert "HNSW_INDEX_SCAN" in str(plan), plan
    for ef in EF_VALUES:
        con.execute(f"SET hnsw_ef_search = {ef}")
        found, qps = timed_queries(runner(con), queries)

        # 16 cursors searching one HNSW index at once crash DuckDB 1.5.5's vss (a
        # segmentation fault, seen on this machine), so DuckDB gets no 16-client figure.
        results[f"ef{ef}"] = (recall(found, truth), qps, float("nan"))
    con.execute("SET hnsw_ef_search = 100")
    filtered_sql = (
        f"SELECT id FROM vecs WHERE bucket = 3 "
        f"ORDER BY array_cosine_distance(v, $1::FLOAT[{dim}]) LIMIT 10"
    )
    found, qps = timed_queries(runner(con, filtered_sql), queries)
    results["filtered"] = (min(len(f) for f in found), recall(found, filtered_truth), qps)
    return results


BRANDS = ("Kinetic", "Northwind", "Alpine", "Urban", "Lumen", "Solstice", "Harbor", "Vertex",
          "Pioneer", "Maple", "Nimbus", "Cobalt", "Sierra", "Orion", "Willow", "Atlas",
          "Ember", "Tundra", "Coral", "Zenith")
ADJECTIVES = ("lightweight", "waterproof", "ergonomic", "compact", "premium", "organic",
              "wireless", "foldable", "insulated", "breathable", "rechargeable", "vintage",
              "heavy-duty", "slim", "noise-cancelling", "stainless", "handmade", "smart",
              "portable", "adjustable")
COLOURS = ("black", "white", "navy", "olive", "red", "grey", "sand", "teal", "pink", "walnut")
MATERIALS = ("leather", "cotton", "bamboo", "steel", "ceramic", "wool", "mesh", "oak",
             "silicone", "linen")
PRODUCTS = ("running shoes", "hiking boots", "backpack", "water bottle", "coffee grinder",
            "espresso machine", "desk lamp", "office chair", "headphones", "bluetooth speaker",
            "yoga mat", "dumbbells", "rain jacket", "wool sweater", "sunglasses", "wrist watch",
            "phone case", "laptop sleeve", "chef knife", "frying pan", "tea kettle",
            "throw blanket", "pillow", "bed sheets", "tent", "sleeping bag", "bike helmet",
            "camera bag", "notebook", "fountain pen", "board game", "baby stroller",
            "dog bed", "cat tree", "garden hose", "plant pot", "wall clock", "mirror",
            "face cream", "shampoo")
USES = ("trail running", "the office", "travel", "home cooking", "camping", "the gym",
        "kids", "winter", "summer evenings", "students", "gifts", "daily commute")


def minilm_vectors(binary, work, count, seed=7):
    """`count` distinct product titles (brand, adjective, colour, material, product, use)
    embedded by rankql's `embed()` (all-MiniLM-L6-v2), in title order."""
    rng = np.random.default_rng(seed)
    titles, seen = [], set()
    while len(titles) < count:
        parts = (BRANDS[rng.integers(len(BRANDS))], ADJECTIVES[rng.integers(len(ADJECTIVES))],
                 COLOURS[rng.integers(len(COLOURS))], MATERIALS[rng.integers(len(MATERIALS))],
                 PRODUCTS[rng.integers(len(PRODUCTS))], USES[rng.integers(len(USES))])
        title = "{} {} {} {} {} for {}".format(*parts)
        if title not in seen:
            seen.add(title)
            titles.append(title)
    csv = os.path.join(work, "titles.csv")
    with open(csv, "w") as out:
        out.write("id,title\n")
        for i, title in enumerate(titles):
            out.write(f"{i},{title}\n")
    embedded = os.path.join(work, "embedded.parquet")
    script = os.path.join(work, "embed.sql")
    with open(script, "w") as out:
        out.write(
            f"CREATE EXTERNAL TABLE titles STORED AS CSV LOCATION '{csv}' "
            "OPTIONS ('format.has_header' 'true');\n"
            f"COPY (SELECT id, embed(title) AS v FROM titles) TO '{embedded}' STORED AS PARQUET;\n"
        )
    started = time.perf_counter()
    subprocess.run([binary, "run", "--in-memory", script], check=True, stdout=subprocess.DEVNULL)
    print(f"embedded {count:,} titles in {time.perf_counter() - started:.0f} s", flush=True)
    raw = embedded + ".f32"
    subprocess.run([sys.executable, "-c", f"""
import numpy as np, pyarrow.parquet as pq
t = pq.read_table({embedded!r}).sort_by("id")
v = np.asarray(t.column("v").combine_chunks().flatten(), dtype=np.float32)
v.tofile({raw!r})
"""], check=True)
    vectors = np.fromfile(raw, dtype=np.float32).reshape(count, -1)
    os.remove(raw)
    return vectors


def main():
    binary, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    minilm = sys.argv[4:] == ["minilm"]
    work = tempfile.mkdtemp(prefix="rankql-vector-index-")
    try:
        if minilm:
            print(f"{rows:,} MiniLM embeddings of product titles, {QUERIES} queries, k = {K}",
                  flush=True)
            embedded = minilm_vectors(binary, work, rows + QUERIES + USERS)
            vectors, queries = embedded[:rows], embedded[rows:rows + QUERIES]
            users = embedded[rows + QUERIES:]
            dim = vectors.shape[1]
        else:
            print(f"{rows:,} x {dim} clustered unit vectors, {QUERIES} queries, k = {K}",
                  flush=True)
            vectors = clustered(rows, dim, seed=42)
            queries = clustered(QUERIES, dim, seed=43)
            users = clustered(USERS, dim, seed=44)
        scores = queries @ vectors.T
        truth = [list(np.argsort(-s)[:K]) for s in scores]
        bucket3 = np.flatnonzero(np.arange(rows) % 10 == 3)
        filtered_truth = [list(bucket3[np.argsort(-s[bucket3])[:K]]) for s in scores]
        del scores
        user_truth = []
        for start in range(0, USERS, 250):
            block = users[start:start + 250] @ vectors.T
            user_truth.extend(list(np.argsort(-s)[:K]) for s in block)
        parquet = os.path.join(work, "vectors.parquet")
        write_parquet(parquet, vectors)
        user_parquet = os.path.join(work, "users.parquet")
        write_parquet(user_parquet, users)
        del vectors
        ours = bench_rankql(
            binary, work, parquet, queries, truth, filtered_truth, (user_parquet, user_truth)
        )
        theirs = bench_duckdb(parquet, dim, queries, truth, filtered_truth)
        print()
        print(f"build (CREATE INDEX): rankql {ours['build_s']:.1f} s, DuckDB vss "
              f"{theirs['build_s']:.1f} s -> ratio {theirs['build_s'] / ours['build_s']:.2f}x "
              f"(>1: rankql faster)")
        print(f"rankql index: {ours['disk_mib']:.0f} MiB on disk, server RSS "
              f"+{ours['rss_index_mib']:.0f} MiB after building and querying it")
        exact_recall, exact_qps = ours["exact"]
        print(f"rankql exact scan: {exact_qps:.1f} queries/s (recall {exact_recall:.3f})")
        print()
        print("ef_search | rankql recall@10  q/s  16-client q/s | DuckDB recall@10  q/s  16-client q/s")
        for ef in EF_VALUES:
            r, q, c = ours[f"ef{ef}"]
            dr, dq, dc = theirs[f"ef{ef}"]
            print(f"{ef:9} | {r:16.3f} {q:5.0f} {c:14.0f} | {dr:16.3f} {dq:5.0f} {'n/a':>14}")
        print()
        for ef in EF_VALUES:
            r, q, c = ours[f"ef{ef}"]
            print(f"ef_search {ef}: rankql index / exact scan = {q / exact_qps:.1f}x queries/s; "
                  f"rankql / DuckDB = {q / theirs[f'ef{ef}'][1]:.2f}x (1 client)")
        per_s, r, exact_per_s, exact_r = ours["all_users"]
        print(f"all-users job (nearest, top 10 for each of {USERS:,} users, ef_search 40): "
              f"{per_s:.0f} users/s, recall@10 {r:.3f}; exact ranking ({USERS_EXACT} users): "
              f"{exact_per_s:.1f} users/s (recall {exact_r:.3f}) -> {per_s / exact_per_s:.0f}x")
        n, r, q = ours["filtered"]
        dn, dr, dq = theirs["filtered"]
        print(f"filtered (bucket = 3, 10%), ef_search 100: rankql fewest rows {n}/10, recall "
              f"{r:.3f}, {q:.0f} q/s; DuckDB fewest rows {dn}/10, recall {dr:.3f}, {dq:.0f} q/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
