#!/usr/bin/env python3
"""Write tests/fixtures/embed_reference.json: reference embeddings for the parity test.

Why: rankql's `embed()` must produce what the model produces. This script computes the
vectors independently of rankql, with ONNX Runtime's Python API on the same model files
(one text per run, no batching, no padding), mean pooling over the attention mask and L2
normalisation in numpy. The fixture is committed; CI does not need Python packages
beyond what `models/fetch.py` uses.

Usage (once, when the model or the texts change):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install onnxruntime==1.31.1 tokenizers numpy
    /tmp/ref/bin/python models/make_reference.py
"""
import json
import os

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL_DIR = os.path.join(HERE, "cache", "minilm-int8")

TEXTS = [
    "This is an example sentence",
    "Stride lightweight running shoes for your first marathon",
    "waterproof hiking boots",
    "Espresso machine with milk frother, stainless steel, programmable",
    "organic cotton onesie for newborns",
    "noise-cancelling wireless headphones with long battery life",
    "",
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé: café, naïve, 日本語のテキスト, emoji 🏃‍♀️👟",
    "grain-free dog food for senior pets " * 40,
    "SELECT * FROM products; -- not SQL to the model, just text",
]


def main() -> None:
    with open(os.path.join(MODEL_DIR, "model.json")) as handle:
        config = json.load(handle)
    tokenizer = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=config["max_tokens"])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(os.path.join(MODEL_DIR, "model.onnx"), options)
    input_names = [i.name for i in session.get_inputs()]

    vectors = []
    for text in TEXTS:
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.ones_like(ids)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, {name: feeds[name] for name in input_names})[0][0]
        pooled = hidden.mean(axis=0)
        pooled = pooled / np.linalg.norm(pooled)
        vectors.append([float(x) for x in pooled])

    out = os.path.join(ROOT, "tests", "fixtures", "embed_reference.json")
    with open(out, "w") as handle:
        json.dump({"model": "minilm-int8", "texts": TEXTS, "vectors": vectors}, handle)
        handle.write("\n")
    print(f"wrote {len(TEXTS)} reference vectors to {out}")


if __name__ == "__main__":
    main()
