"""rankql's learning functions against the same computation in numpy, in one run.

1. EASE on MovieLens-100K (all ratings, λ = 400, top 200 neighbours per item):
   `ease_fit` through SQL vs numpy (dense Gram, np.linalg.inv, the same top-k).
2. The adapter: `adapter_fit` on PAIRS pairs of 384-d vectors (clustered, so there is
   something to learn), batch 256, the same InfoNCE forward/backward and Adam in numpy
   (float32, multi-threaded BLAS).

Times exclude loading: rankql's inputs are in a memory table before the clock starts
(`now()` before and after the statement); numpy's are arrays in memory.
Usage: learn_python.py RANKQL_BIN [PAIRS] [EPOCHS]
"""
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RANKQL, PAIRS, EPOCHS = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000, int(sys.argv[3]) if len(sys.argv) > 3 else 1
RATINGS = "eval-data/ml-100k/ratings.csv"


def rankql_seconds(setup, timed):
    """Runs `setup`, then times the statement `timed` with now() before and after."""
    script = setup + f"""
CREATE TABLE bench_clock AS SELECT now() AS started;
{timed};
SELECT extract(epoch FROM now()) - extract(epoch FROM (SELECT started FROM bench_clock)) AS seconds;
"""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    out = subprocess.run([RANKQL, "run", "--in-memory", "--format", "csv", f.name],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    return float(out.strip().splitlines()[-1])


def numpy_ease(users, items, lam=400.0, top_k=200):
    _, u = np.unique(users, return_inverse=True)
    ids, i = np.unique(items, return_inverse=True)
    x = np.zeros((u.max() + 1, len(ids)))
    x[u, i] = 1.0
    g = x.T @ x + lam * np.eye(len(ids))
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    keep = np.argpartition(-np.abs(b), top_k, axis=1)[:, :top_k]
    return np.take_along_axis(b, keep, axis=1)


def numpy_adapter(a, b, epochs, batch=256, tau=0.05, lr=1e-3, seed=42):
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    w = np.eye(d, dtype=np.float32)
    m1 = np.zeros_like(w)
    m2 = np.zeros_like(w)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(a))
        for start in range(0, len(a) - 1, batch):
            idx = order[start:start + batch]
            if len(idx) < 2:
                continue
            A, B = a[idx], b[idx]
            X, Y = A @ w.T, B @ w.T
            nx = np.linalg.norm(X, axis=1, keepdims=True)
            ny = np.linalg.norm(Y, axis=1, keepdims=True)
            U, V = X / nx, Y / ny
            S = U @ V.T / tau
            R = np.exp(S - S.max(axis=1, keepdims=True))
            R /= R.sum(axis=1, keepdims=True)
            C = np.exp(S - S.max(axis=0, keepdims=True))
            C /= C.sum(axis=0, keepdims=True)
            omega = np.full(len(idx), 1.0 / len(idx), dtype=np.float32)
            eye = np.eye(len(idx), dtype=np.float32)
            G = 0.5 * omega[:, None] * (R - eye) + 0.5 * omega[None, :] * (C - eye)
            dU, dV = G @ V / tau, G.T @ U / tau
            dX = (dU - U * (U * dU).sum(axis=1, keepdims=True)) / nx
            dY = (dV - V * (V * dV).sum(axis=1, keepdims=True)) / ny
            grad = dX.T @ A + dY.T @ B
            step += 1
            m1 = 0.9 * m1 + 0.1 * grad
            m2 = 0.999 * m2 + 0.001 * grad * grad
            w -= lr * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
    return w


def main():
    with open(RATINGS) as f:
        rows = list(csv.reader(f))[1:]
    users = np.array([int(r[0]) for r in rows])
    items = np.array([int(r[1]) for r in rows])
    numpy_ease(users, items)
    started = time.perf_counter()
    numpy_ease(users, items)
    numpy_s = time.perf_counter() - started
    setup = f"""CREATE EXTERNAL TABLE r (user_id BIGINT, item_id BIGINT, rating BIGINT, ts BIGINT)
STORED AS CSV LOCATION '{os.path.abspath(RATINGS)}' OPTIONS ('format.has_header' 'true');
CREATE TABLE ratings AS SELECT user_id, item_id FROM r;
"""
    timed = """CREATE TABLE model AS SELECT ease_fit(user_id, item_id, '{"lambda": 400, "top_k": 200}') AS m FROM ratings"""
    rankql_s = min(rankql_seconds(setup, timed) for _ in range(2))
    print(f"EASE on MovieLens-100K (943 users, 1,682 items, 100k ratings): rankql ease_fit {rankql_s:.3f} s, "
          f"numpy {numpy_s:.3f} s -> {numpy_s / rankql_s:.2f}x numpy's speed")

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, 384)).astype(np.float32)
    cluster = rng.integers(0, 1000, size=PAIRS)
    a = centres[cluster] + 0.7 * rng.normal(size=(PAIRS, 384)).astype(np.float32)
    b = centres[cluster] + 0.7 * rng.normal(size=(PAIRS, 384)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pairs.parquet")
        vec = pa.list_(pa.float32())
        pq.write_table(pa.table({"a": pa.array(list(a), type=vec), "b": pa.array(list(b), type=vec)}), path)
        setup = f"""CREATE EXTERNAL TABLE p STORED AS PARQUET LOCATION '{path}';
CREATE TABLE pairs AS SELECT a, b FROM p;
"""
        timed = f"""CREATE TABLE adapter AS SELECT adapter_fit(a, b, '{{"epochs": {EPOCHS}}}') AS w FROM pairs"""
        rankql_s = rankql_seconds(setup, timed)
    started = time.perf_counter()
    numpy_adapter(a, b, EPOCHS)
    numpy_s = time.perf_counter() - started
    print(f"adapter_fit, {PAIRS:,} pairs of 384-d vectors, {EPOCHS} epoch(s), batch 256: rankql {rankql_s:.2f} s "
          f"({PAIRS * EPOCHS / rankql_s:,.0f} pairs/s), numpy {numpy_s:.2f} s -> {numpy_s / rankql_s:.2f}x numpy's speed")


if __name__ == "__main__":
    main()
