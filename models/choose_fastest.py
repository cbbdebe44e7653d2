#!/usr/bin/env python3
"""Measure graphs of one model on this machine's CPU and print which is fastest.

Why: whether the int8 or the fp32 MiniLM is faster depends on the CPU (weight-only int8
is slower than fp32 without VNNI, faster with it); `models/fetch.py` runs this once per
machine and makes the winner the `minilm` that `embed(text)` uses. A candidate counts only
if its vectors stay within cosine 0.999 of the reference graph's (the first one, fp32).

Each graph embeds the same 384 generated product texts with ONNX Runtime's Python API as
rankql's `embed` does (texts sorted by length, batches of 32, mean pooling, every core),
best of two rounds after a warm-up.

Usage: choose_fastest.py REFERENCE_DIR CANDIDATE_DIR [...]   (model directories holding
model.onnx and tokenizer.json; run by models/fetch.py in its build venv). Prints JSON:
{"rates": {dir name: texts/s}, "min_cosine": {dir name: cosine to the reference},
 "chosen": dir name}.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

WORDS = ["lightweight", "breathable", "running", "shoes", "waterproof", "hiking", "boots",
         "stainless", "steel", "water", "bottle", "organic", "cotton", "t-shirt", "wireless",
         "noise", "cancelling", "headphones", "with", "long", "battery", "life", "for",
         "women", "men", "kids", "trail", "marathon", "espresso", "machine", "milk",
         "frother", "yoga", "mat", "non-slip", "backpack", "laptop", "compartment"]


def texts(count: int) -> list:
    state = 12345
    out = []
    for number in range(count):
        words = []
        for _ in range(8 + number % 40):
            state = (state * 1103515245 + 12345) % (1 << 31)
            words.append(WORDS[state % len(WORDS)])
        out.append(" ".join(words))
    return out


def embed(model_dir: str, samples: list, prefix: str = "", max_tokens: int = 256):
    """(texts/s, vectors) of the graph in `model_dir` on `samples`, each put after
    `prefix`: best of two timed rounds after a warm-up (also used by
    benches/embed_python.py)."""
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = onnxruntime.InferenceSession(os.path.join(model_dir, "model.onnx"), options)
    inputs = {i.name for i in session.get_inputs()}
    encodings = tokenizer.encode_batch([prefix + text for text in samples])
    order = sorted(range(len(samples)), key=lambda i: len(encodings[i].ids))
    vectors = np.zeros((len(samples), session.get_outputs()[0].shape[-1]), dtype=np.float32)

    def run_all():
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, :len(encodings[i].ids)] = encodings[i].ids
                mask[row, :len(encodings[i].ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, {name: feeds[name] for name in inputs})[0]
            pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
            vectors[batch] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    run_all()
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        run_all()
        best = min(best, time.perf_counter() - started)
    return len(samples) / best, vectors


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: choose_fastest.py REFERENCE_DIR CANDIDATE_DIR [...]")
    samples = texts(384)
    rates, cosines, reference = {}, {}, None
    for model_dir in sys.argv[1:]:
        name = os.path.basename(os.path.normpath(model_dir))
        rate, vectors = embed(model_dir, samples)
        if reference is None:
            reference = vectors
        rates[name] = round(rate, 1)
        cosines[name] = round(float(np.min(np.sum(vectors * reference, axis=1))), 6)
    eligible = [name for name in rates if cosines[name] >= 0.999]
    chosen = max(eligible, key=lambda name: rates[name])
    print(json.dumps({"rates": rates, "min_cosine": cosines, "chosen": chosen}))


if __name__ == "__main__":
    main()
