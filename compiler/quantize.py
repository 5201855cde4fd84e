"""Quantize: scales from calibration data, integer weights, dyadic requantizers (int kind);
FP8 codes and scales (fp kind, below).

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


# FP8 (pe.kind "fp"): the array multiplies FP8 codes and returns FP32 results; the host scales.
#
# - activations: one scale per tensor, s = max|x| / max_finite(format) over the calibration
#   batch; codes = golden.formats encode(clip(x / s, +-max_finite)) (round to nearest even,
#   ml_dtypes' encodings), -0 stored as +0 (so a pruned weight stays a zero code);
# - weights: one scale per output channel, s_w = max|w_c| / max_finite;
# - a GEMM's result r (FP32 bits from the array) is the host's: y = r * s_in * s_w + bias
#   (float64), ReLU if fused, then codes at the output tensor's scale for the next GEMM; the
#   model's last GEMM returns y (float logits).

def fp_codes(x, scale, fmt):
    """Codes of x / scale in format `fmt` (golden.formats), saturated to +-max_finite (int64)."""
    from ..golden.formats import get_format
    f = get_format(fmt)
    top = f.max_finite
    codes = f.encode(np.clip(np.asarray(x, dtype=np.float64) / scale, -top, top)).astype(np.int64)
    codes[codes == 1 << (f.width - 1)] = 0        # -0 -> +0
    return codes


def fp_decode(codes, fmt):
    from ..golden.formats import get_format
    return get_format(fmt).decode(np.asarray(codes))


def fp_output(bits, acc_scale, bias, relu, out_scale, fmt):
    """The host's output stage of an fp GEMM: FP32 result bits (rows, n) -> y = r * acc_scale +
    bias (float64, per column), ReLU if `relu`; codes of y at `out_scale` in `fmt`, or y itself
    when out_scale is None (the model's output)."""
    acc = np.asarray(bits, dtype=np.int64).astype(np.uint32).view(np.float32).astype(np.float64)
    y = acc * np.asarray(acc_scale, dtype=np.float64) + np.asarray(bias, dtype=np.float64)
    if relu:
        y = np.maximum(y, 0.0)
    return y if out_scale is None else fp_codes(y, out_scale, fmt)


def _fp_scale(values, fmt):
    from ..golden.formats import get_format
    top = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return (top if top > 0 else 1.0) / get_format(fmt).max_finite


def quantize_fp(graph: Graph, calibration, act_fmt, weight_fmt) -> bool:
    """Attach the FP8 quantization (attrs: scale, q) to every node of a sparsified graph."""
    record = {}
    run_float(graph, calibration, record)
    for node in graph.nodes:
        node.attrs["scale"] = (_fp_scale(record[node.name], act_fmt) if node.op in SCALED_OPS
                               else graph.node(node.inputs[0]).attrs["scale"])
        if node.op == "gemm":
            w = node.attrs["weight"]
            s_w = np.array([_fp_scale(w[:, c], weight_fmt) for c in range(w.shape[1])])
            bias = node.attrs["bias"]
            node.attrs["q"] = {"weight": fp_codes(w / s_w, 1.0, weight_fmt), "weight_scale": s_w,
                               "acc_scale": graph.node(node.inputs[0]).attrs["scale"] * s_w,
                               "bias": np.zeros(w.shape[1]) if bias is None else np.asarray(bias),
                               "requant": False}
    return True
