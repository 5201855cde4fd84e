"""OCP Microscaling (MX) block dot products (SPEC section 2, OCP MX Specification v1.0).

An MX block is 32 element codes sharing one E8M0 scale X = 2^(e-127) (0xFF = NaN). Element
formats (OCP MX v1.0 section 5): MXFP8 = fp8_e4m3 or fp8_e5m2, MXFP6 = fp6_e3m2 or fp6_e2m3,
MXFP4 = fp4_e2m1, MXINT8 = `mxint8`, an 8-bit two's-complement integer with an implicit scale of
2^-6 (so codes 0x80..0x7F are -2 .. 127/64; microsoft/microxcaling, the spec authors' emulator,
models it as ebits=0, mbits=8, emax=0, i.e. max 127/64).

The spec's Dot (section 6.1) is C = X(A) * X(B) * sum_i P_i(A) * P_i(B), NaN when either scale is
NaN, with the internal precision and order left to the implementation; `mx_block_dot` fixes both.

The `mx` PE kind (rtl/mac_mx.py) computes, per output tile, several blocks of the kept pairs:
`mx_tile` (over blocks: each block `mx_block_dot` exact, then FP32 RNE partial sums in a fixed
order) and `mx_mac` (over beats, as the MAC unit sees them) are its bit-exact model, with
`mx_block_flags` for the overflow / invalid flag.
"""

import math
from fractions import Fraction

import numpy as np

from . import dot as D
from . import formats as F
from .fp_mac import _add as _fp32_add
from .fp_mac import fp32_bits

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


# ---------------------------------------------------------------------------------------------
# The `mx` PE kind: tiles of several blocks (rtl/mac_mx.py), bit-exact.


def mx_block_flags(elem_fmt, a_bits, a_scale, b_bits, b_scale):
    """The `overflow` flag of each block of `mx_block_dot(accumulate="exact")` (same operands,
    broadcast): an invalid operation inside the block (an infinite element times a zero, or
    +inf and -inf products meeting; raised whatever the scales) or FP32 overflow (the block's
    finite scaled sum rounds to +-inf; not raised for a NaN scale or a special block)."""
    fa = fb = element_format(elem_fmt)
    a, b = np.asarray(a_bits), np.asarray(b_bits)
    sa, sb = np.asarray(a_scale), np.asarray(b_scale)
    lead = np.broadcast_shapes(a.shape[:-1], b.shape[:-1], sa.shape, sb.shape)
    a = np.broadcast_to(a, lead + (BLOCK_SIZE,))
    b = np.broadcast_to(b, lead + (BLOCK_SIZE,))
    _, _, special = F.exact_product(fa, a, fb, b)
    _, _, ea = fa.exact_value(a)
    _, _, eb = fb.exact_value(b)
    inf_times_zero = ((special == F.NAN) & (ea != F.NAN) & (eb != F.NAN)).any(-1)
    both_inf = (special == F.POS_INF).any(-1) & (special == F.NEG_INF).any(-1)
    value = np.asarray(mx_block_dot(elem_fmt, a, sa, b, sb))
    scale_nan = (np.broadcast_to(sa, lead) == SCALE_NAN) | (np.broadcast_to(sb, lead) == SCALE_NAN)
    finite = ~(special != F.FINITE).any(-1) & ~scale_nan
    return inf_times_zero | both_inf | (finite & np.isinf(value))


def mx_tile(elem_fmt, a_bits, a_scales, b_bits, b_scales, lanes=1):
    """One output tile of the `mx` PE kind over whole blocks: (FP32 bits uint32, flag bool).

    a_bits, b_bits: element codes of shape (..., blocks, 32) (a block's kept pairs, padded with
    +0 x +0 pairs to 32); a_scales, b_scales: E8M0 codes of shape (..., blocks). Leading axes are
    independent tiles.

    Order, per tile:
      1. r[j] = mx_block_dot(elem_fmt, a[j], a_scales[j], b[j], b_scales[j], accumulate="exact"):
         each block exact, rounded once to FP32 (RNE).
      2. `lanes` = L partial sums acc[i] = -0.0 (the identity of RNE addition, so that a
         one-block tile is r[0] bit for bit, -0 included); for j = 0, 1, ...:
         acc[j mod L] = acc[j mod L] + r[j] (FP32 RNE).
      3. result = (...((acc[0] + acc[1]) + acc[2]) ... + acc[L-1]).
    With L = 1 this is the sequential FP32 sum of the blocks in K order, starting from -0.0.
    NaN results are the quiet NaN 0x7FC00000. Flag = any block's `mx_block_flags` | any of the
    FP32 additions raised overflow or invalid (inf + -inf); NaN operands propagate quietly.
    """
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    a, b = np.asarray(a_bits), np.asarray(b_bits)
    sa, sb = np.asarray(a_scales), np.asarray(b_scales)
    if a.ndim < 2 or a.shape != b.shape or sa.shape != a.shape[:-1] or sb.shape != a.shape[:-1]:
        raise ValueError(f"operands must have shapes (..., blocks, {BLOCK_SIZE}) and scales "
                         f"(..., blocks), got {a.shape}, {b.shape}, {sa.shape}, {sb.shape}")
    if a.shape[-2] < 1:
        raise ValueError("a tile needs at least one block")
    lead, blocks = a.shape[:-2], a.shape[-2]
    a = a.reshape((-1, blocks, BLOCK_SIZE))
    b = b.reshape((-1, blocks, BLOCK_SIZE))
    sa, sb = sa.reshape((-1, blocks)), sb.reshape((-1, blocks))
    r = np.asarray(mx_block_dot(elem_fmt, a, sa, b, sb), dtype=np.float32).reshape(-1, blocks)
    flags = mx_block_flags(elem_fmt, a, sa, b, sb).reshape(-1, blocks).any(axis=1)
    acc = [np.full(a.shape[0], -0.0, dtype=np.float32) for _ in range(lanes)]
    for j in range(blocks):
        acc[j % lanes], f = _fp32_add(acc[j % lanes], r[:, j])
        flags |= f
    result = acc[0]
    for i in range(1, lanes):
        result, f = _fp32_add(result, acc[i])
        flags |= f
    return fp32_bits(result).reshape(lead), flags.reshape(lead)


def mx_mac(elem_fmt, a_bits, w_bits, a_side, w_side, m, lanes=1):
    """The `mx` MAC unit's tiles in port terms: (FP32 bits uint32, flag bool).

    a_bits, w_bits: (..., B, N) codes, one beat per K-group of M (the N kept pairs of the group,
    in index order); a_side, w_side: (..., B) the E8M0 scales seen with each beat. A block is
    32 / M consecutive beats (32 K elements); the MAC samples both scales on the block's LAST
    beat. A tile whose beat count B is not a multiple of 32 / M ends mid-block: malformed,
    result NaN (0x7FC00000) and flag set. Otherwise `mx_tile` over the blocks, each block's
    32/M * N kept pairs padded with +0 x +0 to 32 elements.
    """
    if BLOCK_SIZE % m:
        raise ValueError(f"M={m} does not divide the block size {BLOCK_SIZE}")
    a, w = np.asarray(a_bits), np.asarray(w_bits)
    sa, sw = np.asarray(a_side), np.asarray(w_side)
    if a.ndim < 2 or a.shape != w.shape or sa.shape != a.shape[:-1] or sw.shape != a.shape[:-1]:
        raise ValueError(f"operands must have shapes (..., B, N) and sides (..., B), got "
                         f"{a.shape}, {w.shape}, {sa.shape}, {sw.shape}")
    lead, beats, n = a.shape[:-2], a.shape[-2], a.shape[-1]
    per_block = BLOCK_SIZE // m
    if n > m:
        raise ValueError(f"N={n} exceeds M={m}")
    if beats % per_block:
        return (np.full(lead, 0x7FC00000, dtype=np.uint32), np.ones(lead, dtype=bool))
    blocks = beats // per_block
    pad = BLOCK_SIZE - per_block * n

    def blocked(x):
        x = x.reshape(lead + (blocks, per_block * n))
        return np.concatenate([x, np.zeros(lead + (blocks, pad), dtype=x.dtype)], axis=-1)

    last = per_block - 1
    return mx_tile(elem_fmt, blocked(a), sa.reshape(lead + (blocks, per_block))[..., last],
                   blocked(w), sw.reshape(lead + (blocks, per_block))[..., last], lanes)
