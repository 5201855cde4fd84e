"""OCP Microscaling (MX) block dot products (SPEC section 2, OCP MX Specification v1.0).

An MX block is 32 element codes sharing one E8M0 scale X = 2^(e-127) (0xFF = NaN). Element
formats (OCP MX v1.0 section 5): MXFP8 = fp8_e4m3 or fp8_e5m2, MXFP6 = fp6_e3m2 or fp6_e2m3,
MXFP4 = fp4_e2m1, MXINT8 = `mxint8`, an 8-bit two's-complement integer with an implicit scale of
2^-6 (so codes 0x80..0x7F are -2 .. 127/64; microsoft/microxcaling, the spec authors' emulator,
models it as ebits=0, mbits=8, emax=0, i.e. max 127/64).

The spec's Dot (section 6.1) is C = X(A) * X(B) * sum_i P_i(A) * P_i(B), NaN when either scale is
NaN, with the internal precision and order left to the implementation; `mx_block_dot` fixes both.
"""

import math
from fractions import Fraction

import numpy as np

from . import dot as D
from . import formats as F

BLOCK_SIZE = 32
SCALE_BIAS = 127
SCALE_NAN = 0xFF

MX_ELEMENT_FORMATS = ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "mxint8")
# MX format name -> element format (element names are accepted as well).
MX_FORMATS = {"mxfp8_e4m3": "fp8_e4m3", "mxfp8_e5m2": "fp8_e5m2", "mxfp6_e3m2": "fp6_e3m2",
              "mxfp6_e2m3": "fp6_e2m3", "mxfp4": "fp4_e2m1", "mxint8": "mxint8"}


def element_format(name):
    """The element Format of an MX format or element name; ValueError naming the allowed ones."""
    name = MX_FORMATS.get(name, name)
    if name not in MX_ELEMENT_FORMATS:
        allowed = list(MX_FORMATS) + [n for n in MX_ELEMENT_FORMATS if n not in MX_FORMATS]
        raise ValueError(f"unknown MX element format {name!r}; allowed: {', '.join(allowed)}")
    return F.get_format(name)


def mx_block_dot(elem_fmt, a_bits, a_scale, b_bits, b_scale, accumulate="exact", output="fp32"):
    """Dot product of two MX blocks of exactly 32 elements: dot(A, B) * 2^(ea-127) * 2^(eb-127).

    elem_fmt: one MX/element format name for both blocks, or a pair (fmt_a, fmt_b).
    a_bits, b_bits: element codes, last axis of length 32 (leading axes broadcast, with the
    scales' shapes); a_scale, b_scale: E8M0 codes.

    accumulate="exact": the 32 products are exact and summed exactly (`dot.fixed_point_dot`), the
    sum is multiplied exactly by 2^(ea+eb-254) and rounded once to FP32 with RNE (overflow to
    +-inf, gradual underflow) -> np.float32; with output="exact" the unrounded Fraction instead.
    accumulate="fp32": the element dot is `dot.fp_dot_fp32` (every product of these element
    formats is exact in FP32; the 31 additions run in index order from +0.0, RNE after each), and
    that FP32 sum times 2^(ea+eb-254) is rounded once to FP32 with RNE.

    Result is NaN if either scale is 0xFF (whatever the elements); otherwise element specials
    follow the dot rules (E4M3/E5M2 NaN codes, E5M2 inf * 0 = NaN, inf + -inf = NaN, inf times
    a scale stays inf).
    """
    if isinstance(elem_fmt, (tuple, list)):
        fa, fb = (element_format(n) for n in elem_fmt)
    else:
        fa = fb = element_format(elem_fmt)
    if accumulate not in ("exact", "fp32"):
        raise ValueError(f"unknown accumulate {accumulate!r}; allowed: exact, fp32")
    if output not in ("fp32", "exact"):
        raise ValueError(f"unknown output {output!r}; allowed: fp32, exact")
    if output == "exact" and accumulate != "exact":
        raise ValueError("output='exact' needs accumulate='exact'")
    a = np.asarray(a_bits)
    b = np.asarray(b_bits)
    for arr in (a, b):
        size = arr.shape[-1] if arr.ndim else 1
        if size != BLOCK_SIZE:
            raise ValueError(f"block size {size} is not supported; allowed: {BLOCK_SIZE}")
    sa = F.get_format("e8m0").check_bits(a_scale)
    sb = F.get_format("e8m0").check_bits(b_scale)
    lead = np.broadcast_shapes(a.shape[:-1], b.shape[:-1], sa.shape, sb.shape)
    a = np.broadcast_to(a, lead + (BLOCK_SIZE,))
    b = np.broadcast_to(b, lead + (BLOCK_SIZE,))
    scale_exp = (np.broadcast_to(sa, lead).astype(np.int64)
                 + np.broadcast_to(sb, lead).astype(np.int64) - 2 * SCALE_BIAS).reshape(-1)
    scale_nan = ((np.broadcast_to(sa, lead) == SCALE_NAN)
                 | (np.broadcast_to(sb, lead) == SCALE_NAN)).reshape(-1)

    if accumulate == "fp32":
        d = np.asarray(D.fp_dot_fp32(fa, a, fb, b), dtype=np.float32).reshape(-1)
        # d * 2^scale_exp is exact in float64 (24-bit significand, exponent within +-403),
        # so the float64 -> float32 cast is the single RNE rounding.
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.ldexp(d.astype(np.float64), scale_exp).astype(np.float32)
        out[scale_nan] = np.nan
        return out.reshape(lead) if lead else out[0]

    acc, lsb, special = D.fixed_point_dot(fa, a, fb, b)
    acc = np.asarray(acc, dtype=object).reshape(-1)
    special = np.asarray(special).reshape(-1)
    vals = []
    for v, s, e, nan in zip(acc, special, scale_exp.tolist(), scale_nan.tolist()):
        if nan:
            vals.append(math.nan)
        elif s:
            vals.append(D._special_float(s))
        elif output == "exact":
            vals.append(Fraction(int(v)) * Fraction(2) ** (lsb + e))
        else:
            vals.append(D.round_exact(int(v), lsb + e))
    if output == "exact":
        out = np.empty(len(vals), dtype=object)
        out[:] = vals
    else:
        out = np.array(vals, dtype=np.float32)
    return out.reshape(lead) if lead else out[0]
