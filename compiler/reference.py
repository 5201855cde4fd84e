"""Reference executions of an IR graph in numpy: float (for calibration and for checking the
importer against torch) and integer (bit-exact: what the accelerator plus host must compute).

The integer GEMM is golden.gemm's sparse GEMM on the compressed N:M weights (K padded with zero
columns), then the output stage: acc + bias, golden.dot.requantize per output channel
(round half up, saturate to the activation width), ReLU.
"""
from __future__ import annotations

import numpy as np

from ..golden.dot import requantize
from ..golden.gemm import gemm_int, sparse_gemm_int
from ..golden.fp_mac import fp_mac
from ..golden.nm import compress_nm, kept_pairs
from . import hostops
from .ir import Graph, Node


def host_op(node: Node, x, integer):
    """One host op on its input tensor(s) (float or integer)."""
    a = node.attrs
    if node.op == "reshape":
        return x[0].reshape(a["target_shape"])
    if node.op == "im2col":
        return hostops.im2col(x[0], a["kernel"], a["stride"], a["padding"])
    if node.op == "to_nchw":
        return hostops.to_nchw(x[0], a["spatial"])
    if node.op == "maxpool":
        return hostops.maxpool(x[0], a["kernel"], a["stride"])
    if node.op == "avgpool":
        return hostops.avgpool(x[0], a["kernel"], a["stride"])
    if node.op == "relu":
        return np.maximum(x[0], 0)
    if node.op == "add" and not integer:
        return x[0] + x[1]
    raise AssertionError(f"no host implementation of {node.op}")


def pad_columns(x, k_pad):
    """x (rows, K) with zero columns appended up to k_pad."""
    return np.pad(x, ((0, 0), (0, k_pad - x.shape[1]))) if x.shape[1] < k_pad else x


def run_float(graph: Graph, x, record=None):
    """Float64 execution of the (unquantized) graph; `record` collects every node's tensor."""
    values = {}
    for node in graph.nodes:
        if node.op == "input":
            out = np.asarray(x, dtype=np.float64)
        elif node.op == "gemm":
            inp = values[node.inputs[0]]
            w = node.attrs["weight"]
            out = pad_columns(inp, w.shape[0]) @ w
            if node.attrs["bias"] is not None:
                out = out + node.attrs["bias"]
            if node.attrs["relu"]:
                out = np.maximum(out, 0)
        else:
            out = host_op(node, [values[i] for i in node.inputs], integer=False)
        values[node.name] = out
    if record is not None:
        record.update(values)
    return values[graph.output]


def compressed_weights(node: Node):
    """(values, indices) of a quantized GEMM's weight in its N:M pattern (None for dense)."""
    n, m = node.attrs["pattern"]
    if n == m:
        return None
    return compress_nm(node.attrs["q"]["weight"], n, m)


def gemm_accumulators(node: Node, x, acc_width=32, overflow="wrap"):
    """The array's accumulators acc = x @ W_q for an int GEMM node (golden.gemm), shape
    (rows, N); the pattern's compressed form when sparse."""
    n, m = node.attrs["pattern"]
    x = pad_columns(np.asarray(x, dtype=np.int64), node.attrs["k_pad"])
    if n == m:
        acc, _ = gemm_int(x, node.attrs["q"]["weight"], m, acc_width, overflow)
    else:
        values, indices = compressed_weights(node)
        acc, _ = sparse_gemm_int(x, values, indices, n, m, acc_width, overflow)
    return acc


def output_stage(node: Node, acc, act_bits):
    """acc + bias, requantized per output channel to `act_bits` (half up, saturating) when the
    GEMM requantizes, then ReLU if fused."""
    q = node.attrs["q"]
    out = acc + q["bias"]
    if q["requant"]:
        out = np.stack([requantize(out[:, c], int(q["mult"][c]), int(q["shift"][c]), act_bits)
                        for c in range(out.shape[1])], axis=1)
    if node.attrs["relu"]:
        out = np.maximum(out, 0)
    return out


def run_int(graph: Graph, x_q, act_bits=8, record=None, gemm=None):
    """Integer execution of a quantized graph on the quantized input `x_q`. `gemm(node, x)`
    computes one GEMM node's output (default: golden accumulators + output stage here); the
    program runner passes the accelerator's executor instead. Returns the output tensor (int64)."""
    values = {}
    for node in graph.nodes:
        if node.op == "input":
            out = np.asarray(x_q, dtype=np.int64)
        elif node.op == "gemm":
            inp = values[node.inputs[0]]
            out = (gemm(node, inp) if gemm is not None
                   else output_stage(node, gemm_accumulators(node, inp), act_bits))
        elif node.op == "add":
            q = node.attrs["q"]
            out = hostops.residual_add_int(values[node.inputs[0]], values[node.inputs[1]],
                                           q["mult"][0], q["mult"][1], q["shift"], act_bits)
        else:
            out = host_op(node, [values[i] for i in node.inputs], integer=True)
        values[node.name] = out
    if record is not None:
        record.update(values)
    return values[graph.output]


def fp_gemm_bits(node: Node, codes, target):
    """FP32 result bits (rows, N) of an fp GEMM node on activation codes (rows, K): golden.fp_mac
    over each output's kept (activation, weight) code pairs in the order the array streams them
    (golden.nm.kept_pairs), as the accelerator's golden executor computes them."""
    n, m = node.attrs["pattern"]
    x = pad_columns(np.asarray(codes, dtype=np.int64), node.attrs["k_pad"])
    values, indices = compress_nm(node.attrs["q"]["weight"], n, m)
    acts, weights = kept_pairs(x, values, indices, n, m)
    accumulate, lanes, acc_bits = target.fp_mac()
    bits, _ = fp_mac(target.act_format, acts, target.weight_format, weights, accumulate, lanes,
                     acc_bits)
    return bits.astype(np.int64)


def run_fp(graph: Graph, codes, target, record=None):
    """FP8 execution of a quantize_fp graph on the input codes: each GEMM's FP32 results go
    through the host's output stage (quantize.fp_output); host ops only move codes. Returns the
    last GEMM's float64 outputs."""
    from .quantize import fp_output
    values = {}
    for node in graph.nodes:
        if node.op == "input":
            out = np.asarray(codes, dtype=np.int64)
        elif node.op == "gemm":
            q = node.attrs["q"]
            out = fp_output(fp_gemm_bits(node, values[node.inputs[0]], target), q["acc_scale"],
                            q["bias"], node.attrs["relu"],
                            None if node.name == graph.output else node.attrs["scale"],
                            target.act_format)
        else:
            out = host_op(node, [values[i] for i in node.inputs], integer=True)
        values[node.name] = out
    if record is not None:
        record.update(values)
    return values[graph.output]
