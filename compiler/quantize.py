"""Quantize: scales from calibration data, integer weights, dyadic requantizers (int kind).

INT (HAWQ-V3 style, integer-only inference):
- activations: one symmetric scale per tensor, s = max|x| / (2^(b-1) - 1) over the calibration
  batch (torch's MinMaxObserver, per_tensor_symmetric); the host quantizes the model input as
  clamp(round_half_even(x / s)). Scale-preserving host ops (reshape, im2col, pooling, ReLU)
  pass their input's scale on.
- weights: one symmetric scale per output channel (PerChannelMinMaxObserver over K, after
  pruning), w_q = clamp(round_half_even(w / s_w)); bias_q = round_half_even(b / (s_in * s_w)),
  an int32 added to the accumulator.
- output stage of a GEMM: y = clamp(round_half_up((acc + bias_q) * mult / 2^shift)), ReLU if
  fused, with mult / 2^shift the dyadic approximation of s_in * s_w / s_out (`dyadic`: a
  MULT_BITS-bit unsigned multiplier with its top bit set, where the shift range allows). The
  model's last GEMM keeps its accumulators (int32 logits, scale s_in * s_w per channel).
- residual add (host): the exact sum of both inputs rescaled to the output scale by one dyadic
  rescale (hostops.residual_add_int, ADD_SHIFT fractional bits).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import CompileError
from .ir import Graph
from .reference import run_float

MULT_BITS = 16        # unsigned requantization multiplier bits
MAX_SHIFT = 47        # largest output-stage shift
ADD_SHIFT = 16        # fractional bits of the host's residual-add rescale
SCALED_OPS = ("input", "gemm", "add")   # ops whose output gets its own calibrated scale


def dyadic(real, mult_bits=MULT_BITS, max_shift=MAX_SHIFT):
    """(mult, shift) with mult / 2^shift ~ real > 0, mult < 2^mult_bits as large as the shift
    range allows (relative error <= 2^-(mult_bits-1) when mult has its top bit set)."""
    if not real > 0 or not math.isfinite(real):
        raise CompileError(f"requantization scale {real} must be a positive finite number")
    shift = mult_bits - 1 - math.floor(math.log2(real))
    shift = min(shift, max_shift)
    mult = round(real * 2.0 ** shift)
    if mult >= 1 << mult_bits:
        mult, shift = mult >> 1, shift - 1
    if shift < 0:
        raise CompileError(f"requantization scale {real} is too large for a {mult_bits}-bit "
                           f"multiplier")
    return int(mult), int(shift)


def _tensor_scale(values, bits):
    from torch.ao.quantization.observer import MinMaxObserver
    import torch
    qmax = (1 << (bits - 1)) - 1
    observer = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                              quant_min=-qmax, quant_max=qmax)
    observer(torch.from_numpy(np.asarray(values, dtype=np.float32)))
    return float(observer.calculate_qparams()[0])


def _channel_scales(weight, bits):
    from torch.ao.quantization.observer import PerChannelMinMaxObserver
    import torch
    qmax = (1 << (bits - 1)) - 1
    observer = PerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8,
                                        qscheme=torch.per_channel_symmetric,
                                        quant_min=-qmax, quant_max=qmax)
    observer(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
    return observer.calculate_qparams()[0].double().numpy()


def quantize_values(x, scale, bits):
    """clamp(round_half_even(x / scale)) to the symmetric signed range of `bits` (int64)."""
    qmax = (1 << (bits - 1)) - 1
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale), -qmax, qmax).astype(np.int64)


def calibrate(graph: Graph, calibration, act_bits) -> dict[str, float]:
    """Per-tensor activation scales of every node, from a float run on the calibration batch."""
    record = {}
    run_float(graph, calibration, record)
    scales = {}
    for node in graph.nodes:
        if node.op in SCALED_OPS:
            scales[node.name] = _tensor_scale(record[node.name], act_bits)
        else:
            scales[node.name] = scales[node.inputs[0]]
    return scales


def quantize_int(graph: Graph, calibration, act_bits, weight_bits) -> bool:
    """Attach the integer quantization (attrs: scale, q) to every node of a sparsified graph."""
    scales = calibrate(graph, calibration, act_bits)
    for node in graph.nodes:
        node.attrs["scale"] = scales[node.name]
        if node.op == "gemm":
            node.attrs["q"] = _quantize_gemm(node, scales[node.inputs[0]], scales[node.name],
                                             requant=node.name != graph.output or node.attrs["relu"],
                                             weight_bits=weight_bits)
            if not node.attrs["q"]["requant"]:
                node.attrs["scale"] = node.attrs["q"]["acc_scale"]
        elif node.op == "add":
            s_out = scales[node.name]
            node.attrs["q"] = {"mult": [round(scales[i] / s_out * 2 ** ADD_SHIFT) for i in node.inputs],
                               "shift": ADD_SHIFT}
    return True


def _quantize_gemm(node, s_in, s_out, requant, weight_bits):
    w = node.attrs["weight"]
    s_w = _channel_scales(w, weight_bits)
    wq = quantize_values(w / s_w, 1.0, weight_bits)
    acc_scale = s_in * s_w
    bias = node.attrs["bias"]
    bias_q = (np.zeros(w.shape[1], dtype=np.int64) if bias is None
              else np.rint(bias / acc_scale).astype(np.int64))
    q = {"weight": wq, "bias": bias_q, "weight_scale": s_w, "acc_scale": acc_scale,
         "requant": requant}
    if requant:
        pairs = [dyadic(float(r)) for r in acc_scale / s_out]
        q["mult"] = np.array([p[0] for p in pairs], dtype=np.int64)
        q["shift"] = np.array([p[1] for p in pairs], dtype=np.int64)
    return q
