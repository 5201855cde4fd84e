"""Bit-exact model of the `fp` PE kind's MAC unit (rtl/mac_fp.py): one output tile's result and
its `overflow` flag, in the hardware's exact order of operations.

A tile is B beats of N (activation, weight) code pairs: the N kept pairs of each K-group, in
increasing index order (the N:M decoder's lanes), beats in K order. Operands are given as code
arrays of shape (..., B, N); leading axes are independent tiles. Results are FP32 bit patterns
(uint32) with every NaN canonicalised to the quiet NaN 0x7FC00000, plus a boolean flag.

Only the kept pairs take part: a pruned (zero) weight contributes no product, so a NaN or inf
activation at a pruned position does not reach the result (for finite operands this equals the
dense dot product on the decompressed weights, bit for bit, in both modes).

accumulate = "exact" (`fp_mac_exact`): every product exact (`formats.exact_product`), summed
exactly in a two's-complement fixed-point accumulator whose LSB weighs
2^(lsb_exp(a) + lsb_exp(b)), rounded once to FP32 (RNE, gradual underflow, overflow to inf; an
exact zero is +0). Equal to `dot.fp_dot_exact` whenever the accumulator bound is not exceeded.
With `acc_bits` the accumulator is that many bits: after each beat (whose N products are summed
exactly first) a partial sum outside the signed range wraps and poisons the tile (result NaN,
flag set). Specials: NaN if any product is NaN (a NaN operand or inf * 0) or +inf and -inf
products meet; else +-inf if any product is infinite.
Flag = some product is inf * 0 (invalid) | +inf and -inf products meet (invalid) | accumulator
bound exceeded | (no special product and the finite sum rounds to +-inf: FP32 overflow).

accumulate = "fp32" (`fp_mac_fp32`): every addition is an IEEE binary32 addition with RNE, in
this fixed order, with `lanes` = L interleaved partial sums (the hardware's accumulation loop,
an operand register and the pipelined FP32 adder, is L cycles long, so it keeps L independent
slots; the manifest's pe.lanes):
  1. p[b][i] = RNE_fp32(exact product) (exact except for bf16 x bf16, which can underflow or
     overflow); inf * 0 is NaN.
  2. beat sum s[b] = pairwise tree over the N lanes: level by level, neighbours (0,1), (2,3), ...
     are added, an odd last element passes up unchanged (N = 1: s[b] = p[b][0]).
  3. slots acc[j] = +0.0 for j < L; for b = 0, 1, ..., B-1: acc[b mod L] = acc[b mod L] + s[b].
  4. result = (...((acc[0] + acc[1]) + acc[2]) ... + acc[L-1]).
With L = 1 and N = 1 this is `dot.fp_dot_fp32` (sequential, from +0.0).
Flag = any product or addition raised IEEE overflow (finite operands, infinite result) or
invalid (inf * 0, inf + -inf). NaN operands propagate quietly (no flag).
"""

import numpy as np

from . import dot as D
from . import formats as F

FP32_QNAN = 0x7FC00000
ACCUMULATE_MODES = ("exact", "fp32")
# The exact mode's special classes of a sum (exact_beat_sums, exact_result).
SPECIAL_CLASSES = ("nan", "invalid", "pinf", "ninf")
FP_MAC_FORMATS = ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "bf16")


def fp32_bits(x):
    """FP32 bit patterns (uint32) of float32 values, NaN canonicalised to 0x7FC00000."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).copy()
    bits[np.isnan(x)] = FP32_QNAN
    return bits


def _formats(fmt_a, fmt_b):
    fa, fb = F.get_format(fmt_a), F.get_format(fmt_b)
    for f in (fa, fb):
        if f.name not in FP_MAC_FORMATS:
            raise ValueError(f"format {f.name!r} is not an fp PE format; allowed: "
                             f"{', '.join(FP_MAC_FORMATS)}")
    return fa, fb


def _tiles(fa, a_bits, fb, b_bits):
    """Operands as (T, B, N) int64 arrays plus the leading shape."""
    a = fa.check_bits(a_bits)
    b = fb.check_bits(b_bits)
    if a.ndim < 2 or a.shape != b.shape:
        raise ValueError(f"operands must have equal shapes (..., B, N), got {a.shape} and "
                         f"{b.shape}")
    if a.shape[-1] < 1 or a.shape[-2] < 1:
        raise ValueError("a tile needs at least one beat of at least one lane")
    lead = a.shape[:-2]
    return a.reshape((-1,) + a.shape[-2:]), b.reshape((-1,) + b.shape[-2:]), lead


def _invalid_products(fa, a, fb, b):
    """inf * 0 products (NaN products whose operands are not NaN)."""
    _, _, sa = fa.exact_value(a)
    _, _, sb = fb.exact_value(b)
    _, _, sp = F.exact_product(fa, a, fb, b)
    return (sp == F.NAN) & (sa != F.NAN) & (sb != F.NAN)


def exact_beat_sums(fmt_a, a_bits, fmt_b, b_bits):
    """Every beat's exact record, for operands (..., B, N): {"value": the sum of its N products
    as a fixed-point Python int whose LSB weighs 2^(lsb_exp(a) + lsb_exp(b)) (object array),
    "nan", "invalid", "pinf", "ninf": bool arrays (a NaN product, an inf * 0 among them, a +inf
    and a -inf product)}, each of shape (..., B). A non-finite product adds 0 to the value.
    Any formats with exact values (the fp kind's, MX elements)."""
    fa, fb = F.get_format(fmt_a), F.get_format(fmt_b)
    a, b = fa.check_bits(a_bits), fb.check_bits(b_bits)
    mant, exp, special = F.exact_product(fa, a, fb, b)
    lsb = fa.lsb_exp + fb.lsb_exp
    fixed = mant.astype(object) << (exp - lsb).astype(object)
    return {"value": fixed.sum(axis=-1), "nan": (special == F.NAN).any(axis=-1),
            "invalid": _invalid_products(fa, a, fb, b).any(axis=-1),
            "pinf": (special == F.POS_INF).any(axis=-1),
            "ninf": (special == F.NEG_INF).any(axis=-1)}


def exact_result(value, lsb_exp, nan=False, invalid=False, pinf=False, ninf=False, bound=False):
    """(FP32 bits, flag) of one exact-mode sum (rtl.mac_fp.ExactSum.round): NaN if a NaN product
    or +inf and -inf products meet or the bound was exceeded; else +-inf if an infinite product;
    else the fixed-point `value` * 2^lsb_exp rounded once (RNE; an exact zero is +0). Flag:
    invalid | both infinities | bound | (finite, rounded to +-inf)."""
    if nan or (pinf and ninf) or bound:
        result = np.float32(np.nan)
    elif pinf or ninf:
        result = np.float32(np.inf if pinf else -np.inf)
    else:
        result = D.round_to_fp32(int(value), lsb_exp)
    rounded_to_inf = not (nan or pinf or ninf or bound) and np.isinf(result)
    return int(fp32_bits(result)), bool(invalid or (pinf and ninf) or bound or rounded_to_inf)


def fp_mac_exact(fmt_a, a_bits, fmt_b, b_bits, acc_bits=None):
    """Tile results of the exact mode: (uint32 FP32 bits, bool flag), shapes = leading axes."""
    fa, fb = _formats(fmt_a, fmt_b)
    a, b, lead = _tiles(fa, a_bits, fb, b_bits)
    beats = exact_beat_sums(fa, a, fb, b)
    classes = {k: beats[k].any(axis=1) for k in SPECIAL_CLASSES}
    lsb = fa.lsb_exp + fb.lsb_exp
    bits = np.zeros(a.shape[0], dtype=np.uint32)
    flags = np.zeros(a.shape[0], dtype=bool)
    for t in range(a.shape[0]):
        acc, bound_exceeded = 0, False
        for s in beats["value"][t]:
            acc += int(s)
            if acc_bits is not None and not -(1 << (acc_bits - 1)) <= acc < (1 << (acc_bits - 1)):
                bound_exceeded = True
                acc = (acc + (1 << (acc_bits - 1))) % (1 << acc_bits) - (1 << (acc_bits - 1))
        bits[t], flags[t] = exact_result(acc, lsb, bound=bound_exceeded,
                                         **{k: bool(v[t]) for k, v in classes.items()})
    return bits.reshape(lead), flags.reshape(lead)


def _add(x, y):
    """IEEE binary32 RNE addition of float32 arrays, with its overflow/invalid flag."""
    with np.errstate(over="ignore", invalid="ignore"):
        r = (x + y).astype(np.float32)
    overflow = np.isfinite(x) & np.isfinite(y) & np.isinf(r)
    invalid = np.isinf(x) & np.isinf(y) & (np.signbit(x) != np.signbit(y))
    return r, overflow | invalid


def fp32_products(fmt_a, a_bits, fmt_b, b_bits):
    """p = RNE_fp32(exact product) for code arrays, with the flag (inf * 0, or overflow)."""
    fa, fb = _formats(fmt_a, fmt_b)
    a, b = fa.check_bits(a_bits), fb.check_bits(b_bits)
    with np.errstate(over="ignore", invalid="ignore"):
        exact = fa.decode(a) * fb.decode(b)  # exact in float64 for every fp PE format pair
        p = exact.astype(np.float32)
    flag = _invalid_products(fa, a, fb, b) | (np.isfinite(exact) & np.isinf(p))
    return p, flag


def fp32_beat_sums(fmt_a, a_bits, fmt_b, b_bits):
    """Steps 1-2 of the fp32 mode for operands (..., N): each beat's sum s = the pairwise tree
    of its FP32 products (float32, shape (...)) and its flag (a product or tree addition raised
    overflow or invalid)."""
    fa, fb = _formats(fmt_a, fmt_b)
    p, flag = fp32_products(fa, a_bits, fb, b_bits)
    flag = flag.any(axis=-1)
    terms = [p[..., i] for i in range(p.shape[-1])]
    while len(terms) > 1:  # pairwise tree over the lanes
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            s, f = _add(terms[i], terms[i + 1])
            nxt.append(s)
            flag |= f
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0], flag


def fp_mac_fp32(fmt_a, a_bits, fmt_b, b_bits, lanes):
    """Tile results of the fp32 mode with `lanes` interleaved partial sums: (bits, flag)."""
    fa, fb = _formats(fmt_a, fmt_b)
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    a, b, lead = _tiles(fa, a_bits, fb, b_bits)
    beats, flag = fp32_beat_sums(fa, a, fb, b)  # (T, B)
    flags = flag.any(axis=1)
    acc = [np.zeros(a.shape[0], dtype=np.float32) for _ in range(lanes)]
    for k in range(beats.shape[1]):
        acc[k % lanes], f = _add(acc[k % lanes], beats[:, k])
        flags |= f
    result = acc[0]
    for j in range(1, lanes):
        result, f = _add(result, acc[j])
        flags |= f
    return fp32_bits(result).reshape(lead), flags.reshape(lead)


def fp_mac(fmt_a, a_bits, fmt_b, b_bits, accumulate, lanes=1, acc_bits=None):
    """`fp_mac_exact` or `fp_mac_fp32` by accumulation mode (the manifest's parameters)."""
    if accumulate == "exact":
        return fp_mac_exact(fmt_a, a_bits, fmt_b, b_bits, acc_bits)
    if accumulate == "fp32":
        return fp_mac_fp32(fmt_a, a_bits, fmt_b, b_bits, lanes)
    raise ValueError(f"unknown accumulate {accumulate!r}; allowed: {', '.join(ACCUMULATE_MODES)}")
