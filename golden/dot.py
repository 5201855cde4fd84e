"""Bit-exact dot-product semantics of the processing elements (SPEC sections 2 and 3).

Operands are codes of registered formats (`nmforge.golden.formats`); a dot product reduces the last
axis (K) and broadcasts leading axes, so a (rows, K) array of codes gives `rows` dot products.
A 1-D input gives a scalar.

Floating-point dot products (`fp_dot_exact`, `fp_dot_fp32`) accept float and integer formats
(fp8_e4m3, fp8_e5m2, fp6_e3m2, fp6_e2m3, fp4_e2m1, bf16, intN, uintN, mxint8), mixed freely:
every product of two such codes is exact as an integer times a power of two, and exact in float64.

Special values (products classified by `formats.exact_product`): the result is NaN if any product
is NaN (a NaN operand, or an infinity times a zero) or if products of both infinite signs occur;
otherwise +-inf if any product is infinite; otherwise the finite sum. Zero results of the exact
paths are +0 (a fixed-point accumulator has no signed zero).
"""

import math
import operator
from fractions import Fraction

import numpy as np

from . import formats as F
from . import posit as _posit
from .gemm import _accumulate, gemm_int
from .ints import from_unsigned, int_array, int_range
from .nm import kept_pairs

DOT_KINDS = ("float", "int")

FP32_PRECISION, FP32_EMIN, FP32_EMAX = 24, -126, 127


# ---------------------------------------------------------------------------------------------
# Rounding an exact value to FP32


def round_exact(mant, exp, precision=FP32_PRECISION, emin=FP32_EMIN, emax=FP32_EMAX):
    """Round mant * 2^exp (Python ints) to a binary float with RNE; returns a Python float.

    `precision` significand bits (hidden bit included), normal exponents emin..emax, gradual
    underflow to subnormals (quantum 2^(emin - precision + 1)), overflow to +-inf (IEEE 754:
    anything that rounds to a magnitude >= 2^(emax + 1) is infinite). A zero result is +0.0 for
    mant == 0 and carries the sign of mant when a non-zero value underflows.
    """
    mant, exp = operator.index(mant), operator.index(exp)
    if mant == 0:
        return 0.0
    sign = -1.0 if mant < 0 else 1.0
    mag = abs(mant)
    msb = mag.bit_length() - 1 + exp
    quantum = max(msb, emin) - (precision - 1)
    shift = quantum - exp
    if shift <= 0:
        q = mag << -shift
    else:
        q, rem = mag >> shift, mag & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
    if q.bit_length() + quantum > emax + 1:
        return sign * math.inf
    return sign * math.ldexp(q, quantum)


def round_to_fp32(mant, exp):
    """`round_exact` to IEEE binary32, as np.float32."""
    return np.float32(round_exact(mant, exp))


# ---------------------------------------------------------------------------------------------
# Floating-point dot products


def _dot_formats(fmt_a, fmt_b, kinds=DOT_KINDS, what="fp dot products"):
    fa, fb = F.get_format(fmt_a), F.get_format(fmt_b)
    for f in (fa, fb):
        if f.kind not in kinds:
            allowed = [n for n in F.format_names() if F.get_format(n).kind in kinds]
            raise ValueError(f"format {f.name!r} is not supported for {what}; allowed: "
                             f"{', '.join(allowed)}")
    return fa, fb


def _rows(fa, a_bits, fb, b_bits):
    """Operand codes as (rows, K) int64 arrays plus the leading shape of the result."""
    a = fa.check_bits(a_bits)
    b = fb.check_bits(b_bits)
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError("operands must have at least one axis (K)")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"operand lengths differ: K={a.shape[-1]} and K={b.shape[-1]}")
    if a.shape[-1] == 0:
        raise ValueError("K must be at least 1")
    lead = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    k = a.shape[-1]
    a = np.broadcast_to(a, lead + (k,)).reshape(-1, k)
    b = np.broadcast_to(b, lead + (k,)).reshape(-1, k)
    return a, b, lead


def _shape_result(values, lead):
    arr = np.asarray(values).reshape(lead) if lead else values[0]
    return arr


def _sum_special(special):
    """Special class of each row's sum from its products' classes (rows, K) -> (rows,)."""
    nan = (special == F.NAN).any(-1)
    pos = (special == F.POS_INF).any(-1)
    neg = (special == F.NEG_INF).any(-1)
    out = np.zeros(special.shape[0], dtype=np.int8)
    out[pos] = F.POS_INF
    out[neg] = F.NEG_INF
    out[nan | (pos & neg)] = F.NAN
    return out


def _special_float(s):
    return {F.NAN: math.nan, F.POS_INF: math.inf, F.NEG_INF: -math.inf}[int(s)]


def _fixed_rows(fa, a, fb, b):
    mant, exp, special = F.exact_product(fa, a, fb, b)
    lsb = fa.lsb_exp + fb.lsb_exp
    shifted = mant.astype(object) << (exp - lsb).astype(object)
    acc = [int(sum(row)) for row in shifted]  # exact Python-int sums
    return acc, lsb, _sum_special(special)


def fixed_point_dot(fmt_a, a_bits, fmt_b, b_bits):
    """Exact wide fixed-point accumulation: (acc, lsb_exp, special).

    Each exact product mant_a*mant_b * 2^(exp_a+exp_b) is shifted left by
    exp_a + exp_b - lsb_exp, with lsb_exp = lsb_exp(fmt_a) + lsb_exp(fmt_b) the weight of the
    accumulator's least significant bit (fixed by the formats, not by the data), and added to an
    integer accumulator; the sum is exact, so its order does not matter. acc is a Python int (an
    object array of them for batched input); the dot product is acc * 2^lsb_exp unless `special`
    is not FINITE (non-finite products contribute 0 to acc). `accumulator_bits` gives the width.
    """
    fa, fb = _dot_formats(fmt_a, fmt_b)
    a, b, lead = _rows(fa, a_bits, fb, b_bits)
    acc, lsb, special = _fixed_rows(fa, a, fb, b)
    if not lead:
        return acc[0], lsb, int(special[0])
    out = np.empty(len(acc), dtype=object)
    out[:] = acc
    return out.reshape(lead), lsb, special.reshape(lead)


def _max_magnitude_lsb(fmt):
    """Largest |finite value| of `fmt` in units of 2^lsb_exp (a Python int)."""
    mant, exp, special = fmt.exact_value(fmt.codes())
    finite = special == F.FINITE
    return max(abs(int(m)) << int(e - fmt.lsb_exp) for m, e in zip(mant[finite], exp[finite]))


def accumulator_bits(fmt_a, fmt_b, k):
    """Signed width of a fixed-point accumulator that holds any sum of k products exactly."""
    fa, fb = _dot_formats(fmt_a, fmt_b)
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return (k * _max_magnitude_lsb(fa) * _max_magnitude_lsb(fb)).bit_length() + 1


def fp_dot_exact(fmt_a, a_bits, fmt_b, b_bits, output="fp32"):
    """Dot product with exact products and exact accumulation, rounded once at the output.

    Order: products are formed exactly and summed exactly (`fixed_point_dot`), so the result does
    not depend on the order. output="fp32": the exact sum is rounded once to FP32 with RNE
    (overflow to +-inf, gradual underflow; an exact zero is +0.0) and returned as np.float32.
    output="exact": a fractions.Fraction (Python float nan / +-inf for specials).
    Specials as in the module docstring (NaN beats inf; +inf with -inf is NaN).
    """
    if output not in ("fp32", "exact"):
        raise ValueError(f"unknown output {output!r}; allowed: fp32, exact")
    fa, fb = _dot_formats(fmt_a, fmt_b)
    a, b, lead = _rows(fa, a_bits, fb, b_bits)
    acc, lsb, special = _fixed_rows(fa, a, fb, b)
    if output == "fp32":
        vals = np.array([np.float32(_special_float(s)) if s else round_to_fp32(v, lsb)
                         for v, s in zip(acc, special)], dtype=np.float32)
        return _shape_result(vals, lead)
    vals = np.empty(len(acc), dtype=object)
    vals[:] = [_special_float(s) if s else Fraction(v) * Fraction(2) ** lsb
               for v, s in zip(acc, special)]
    return _shape_result(vals, lead)


def _float64_products(fa, a, fb, b):
    """Exact products as float64 (checked: every supported format pair is exact in float64)."""
    if fa.sig_bits + fb.sig_bits > 53 or fa.lsb_exp + fb.lsb_exp < -1074:
        raise ValueError(f"{fa.name} x {fb.name} products are not exact in float64")
    with np.errstate(invalid="ignore", over="ignore"):
        return fa.decode(a) * fb.decode(b)


def fp_dot_fp32(fmt_a, a_bits, fmt_b, b_bits, init=0.0):
    """Dot product accumulated sequentially in FP32 with RNE after every operation.

    Order, for each row: acc = float32(init) (default +0.0); for k = 0, 1, ..., K-1 in index
    order: p_k = RNE_fp32(a_k * b_k) (the exact product rounded once to FP32), then
    acc = RNE_fp32(acc + p_k). Returns acc as np.float32. IEEE 754 binary32 semantics throughout:
    overflow to +-inf, gradual underflow, inf + -inf = NaN, inf * 0 = NaN, NaN propagates, and
    +0 + -0 = +0.

    Product rounding: for every pair among fp8_e4m3, fp8_e5m2, fp6_*, fp4_e2m1 and mxint8 (and
    int8 x int8) the exact product has at most 8 significand bits and an exponent well inside
    FP32's normal range, so p_k is exact and only the additions round. bf16 x bf16 products can
    round: their exponents span 2^-266 .. 2^256, so products underflow (to FP32 subnormals or 0)
    or overflow to inf. int16 x int16 products above 2^24 also round.
    """
    fa, fb = _dot_formats(fmt_a, fmt_b)
    a, b, lead = _rows(fa, a_bits, fb, b_bits)
    with np.errstate(over="ignore"):
        prod = _float64_products(fa, a, fb, b).astype(np.float32)
    acc = np.full(prod.shape[0], init, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(prod.shape[1]):
            acc = acc + prod[:, k]  # float32 + float32 -> float32, IEEE RNE
    return _shape_result(acc, lead)


# ---------------------------------------------------------------------------------------------
# Integer PEs


def int_dot(a, b, acc_width, overflow):
    """Integer dot product with `golden.gemm` semantics: returns (value, overflowed).

    This is `gemm_int` with one group of M = K: the exact sum of all K products is formed, then
    wrapped or saturated once to a signed `acc_width`-bit accumulator; overflowed is True when the
    exact sum lies outside that range.
    """
    a = int_array(a, "a")
    b = int_array(b, "b")
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"a and b must be non-empty 1-D arrays of equal length, got {a.shape} and {b.shape}")
    c, overflowed = gemm_int(a[None, :], b[:, None], a.size, acc_width, overflow)
    return int(c[0, 0]), overflowed


SUBWORD_MODES = {"int8": 8, "int4": 4, "int2": 2}


def _lanes(byte, lane_width, signed, name):
    byte = int_array(byte, name).astype(np.int64)
    bad = (byte < 0) | (byte > 255)
    if bad.any():
        raise ValueError(f"{name} byte {byte[bad].flat[0]} out of range 0..255")
    mask = (1 << lane_width) - 1
    lanes = np.stack([(byte >> (lane_width * i)) & mask for i in range(8 // lane_width)], axis=-1)
    return from_unsigned(lanes, lane_width) if signed else lanes


def subword_products(mode, a_byte, b_byte, signed=True):
    """Products of a precision-scalable (Bit Fusion style) PE for one pair of 8-bit operand words.

    mode "int8": 1 product a*b of the whole bytes; "int4": 2 products, lane 0 = low nibbles,
    lane 1 = high nibbles; "int2": 4 products of the 2-bit fields, lane i = bits 2i+1..2i.
    Lanes are two's complement when `signed` (else unsigned). Lane i of a multiplies lane i of b
    only. Returns int64 of shape broadcast(a_byte, b_byte) + (lanes,).
    """
    if mode not in SUBWORD_MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(SUBWORD_MODES)}")
    w = SUBWORD_MODES[mode]
    return _lanes(a_byte, w, signed, "a") * _lanes(b_byte, w, signed, "b")


def subword_dot(mode, a_byte, b_byte, signed=True):
    """Sum of the lane products of `subword_products` (what the fused PE adds per cycle)."""
    return subword_products(mode, a_byte, b_byte, signed).sum(axis=-1)


def requantize(x, multiplier, shift, out_width=None):
    """Dyadic requantization (HAWQ-V3): round(x * multiplier / 2^shift), ties toward +inf.

    Exactly: y = (x * multiplier + (1 << (shift - 1))) >> shift for shift >= 1 (>> is the
    arithmetic shift, i.e. floor division by 2^shift), and y = x * multiplier for shift == 0.
    So 2.5 -> 3, -2.5 -> -2, -2.6 -> -3. Products are formed exactly (Python ints). With
    `out_width`, y is then saturated to that signed width. Returns int64 (ValueError if a result
    does not fit int64).
    """
    shift = operator.index(shift)
    multiplier = operator.index(multiplier)
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    arr = int_array(x, "x")
    big = arr.astype(object) * multiplier
    if shift:
        big = (big + (1 << (shift - 1))) >> shift
    if out_width is not None:
        lo, hi = int_range(out_width)
        big = np.minimum(np.maximum(big, lo), hi) if big.ndim else min(max(big, lo), hi)
    flat = [int(v) for v in np.asarray(big, dtype=object).ravel()]
    if any(not -(1 << 63) <= v < (1 << 63) for v in flat):
        raise ValueError("requantized value does not fit int64")
    return np.array(flat, dtype=np.int64).reshape(arr.shape)


MPGEMM_WEIGHT_FORMATS = ("int2", "int4", "uint2", "uint4")
MPGEMM_ACT_FORMATS = ("int8", "int16")


def _check_ints(x, fmt, name):
    lo, hi = F.get_format(fmt).lo, F.get_format(fmt).hi
    x = int_array(x, name).astype(np.int64)
    bad = (x < lo) | (x > hi)
    if bad.any():
        raise ValueError(f"{name} value {x[bad].flat[0]} outside the {fmt} range [{lo}, {hi}]")
    return x


def mpgemm_group_dot(w, a, scales, zero_points, group_size, w_fmt="int4", a_fmt="int8"):
    """Mixed-precision (MixPE style) dot product with per-group scale and zero point.

    w: K low-bit weights (integer values of `w_fmt`: int2/int4/uint2/uint4), a: K activations
    (`a_fmt`: int8/int16), K a multiple of `group_size`; group g covers k = g*G .. g*G+G-1 and has
    an integer scale scales[g] and zero point zero_points[g] (in w_fmt's range). Order:
    per group, exact integer accumulation s_g = sum_k w_k * a_k and t_g = sum_k a_k; then the
    group's scale and zero point are applied once: r_g = scales[g] * (s_g - zero_points[g] * t_g)
    (= scales[g] * sum_k (w_k - z_g) * a_k); the result is the exact sum over groups of r_g,
    a Python int. Feed it to `requantize` for the dyadic output stage.
    """
    if w_fmt not in MPGEMM_WEIGHT_FORMATS:
        raise ValueError(f"unknown w_fmt {w_fmt!r}; allowed: {', '.join(MPGEMM_WEIGHT_FORMATS)}")
    if a_fmt not in MPGEMM_ACT_FORMATS:
        raise ValueError(f"unknown a_fmt {a_fmt!r}; allowed: {', '.join(MPGEMM_ACT_FORMATS)}")
    group_size = operator.index(group_size)
    w = _check_ints(w, w_fmt, "w")
    a = _check_ints(a, a_fmt, "a")
    if w.ndim != 1 or w.shape != a.shape or w.size == 0:
        raise ValueError(f"w and a must be non-empty 1-D arrays of equal length, got {w.shape} and {a.shape}")
    if group_size < 1 or w.size % group_size:
        raise ValueError(f"K={w.size} is not a multiple of group_size={group_size}")
    groups = w.size // group_size
    scales = int_array(scales, "scales")
    zero_points = _check_ints(zero_points, w_fmt, "zero_points")
    if scales.shape != (groups,) or zero_points.shape != (groups,):
        raise ValueError(f"scales and zero_points must have shape ({groups},), got "
                         f"{scales.shape} and {zero_points.shape}")
    s = (w * a).reshape(groups, group_size).sum(axis=1)
    t = a.reshape(groups, group_size).sum(axis=1)
    return sum(int(sc) * (int(sg) - int(z) * int(tg))
               for sc, sg, z, tg in zip(scales.tolist(), s.tolist(), zero_points.tolist(), t.tolist()))


MPGEMM_SIDE_RANGES = {"scale": (-(1 << 15), (1 << 15) - 1), "mult": (0, (1 << 16) - 1),
                      "shift": (0, 63)}


def _check_side(x, name, shape):
    lo, hi = MPGEMM_SIDE_RANGES[name]
    x = int_array(x, name).astype(np.int64)
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
    bad = (x < lo) | (x > hi)
    if bad.any():
        raise ValueError(f"{name} value {x[bad].flat[0]} outside [{lo}, {hi}]")
    return x


def mpgemm_gemm(a, values, indices, n, m, scales, zero_points, mult, shift, group_size,
                out_width, acc_bits, w_fmt="int4", a_fmt="int8"):
    """The mpgemm PE array's GEMM (rtl.mac_mpgemm), bit-exact: returns (y, acc, overflowed).

    a (rows, K) activations of `a_fmt`; `values`/`indices` the N:M compressed weights of
    `w_fmt` (K/M*N, cols); scales (int16) and zero_points (w_fmt) of shape (K/group_size, cols),
    one per quantization group and column; mult (uint16) and shift (0..63) of shape (cols,), the
    output stage of each column. Output (i, j), in this order:
      per quantization group q (K elements q*G .. q*G+G-1): its kept pairs only (G/M*N of them;
        pruned weights contribute nothing, not (0 - zero) * a) go through `mpgemm_group_dot`:
        r_q = scales[q, j] * (s_q - zero_points[q, j] * t_q), exact;
      acc = r_0 + r_1 + ... folded in group order on `acc_bits` signed bits, wrapping
        (golden.gemm's accumulation, which also flags a sum outside the range);
      y = requantize(acc, mult[j], shift[j], out_width): round half up, saturate.
    y and acc are int64 (rows, cols); overflowed is True if an accumulation left the acc_bits
    range or an output saturated.
    """
    acts, weights = kept_pairs(int_array(a, "a").astype(np.int64), values, indices, n, m)
    rows, cols, beats, _ = acts.shape  # (rows, cols, G, N): the pairs of each beat
    acts, weights = acts.reshape(rows, cols, -1), weights.reshape(rows, cols, -1)
    group_size = operator.index(group_size)
    if group_size < 1 or group_size % m:
        raise ValueError(f"group_size={group_size} is not a multiple of M={m}")
    pairs = group_size // m * n
    if beats * n % pairs:
        raise ValueError(f"K={beats * m} is not a multiple of group_size={group_size}")
    groups = beats * n // pairs
    scales = _check_side(scales, "scale", (groups, cols))
    zero_points = int_array(zero_points, "zero_points")
    if zero_points.shape != (groups, cols):
        raise ValueError(f"zero_points must have shape {(groups, cols)}, got {zero_points.shape}")
    mult, shift = _check_side(mult, "mult", (cols,)), _check_side(shift, "shift", (cols,))
    r = np.zeros((groups, rows, cols), dtype=np.int64)
    for q in range(groups):
        part = slice(q * pairs, (q + 1) * pairs)
        for j in range(cols):
            for i in range(rows):
                r[q, i, j] = mpgemm_group_dot(weights[i, j, part], acts[i, j, part],
                                              scales[q:q + 1, j], zero_points[q:q + 1, j],
                                              pairs, w_fmt, a_fmt)
    acc, overflowed = _accumulate(r, acc_bits, "wrap")
    y = np.zeros_like(acc)
    for j in range(cols):
        y[:, j] = requantize(acc[:, j], int(mult[j]), int(shift[j]), out_width)
        wide = requantize(acc[:, j], int(mult[j]), int(shift[j]), 63)
        overflowed |= bool((wide != y[:, j]).any())
    return y, acc, overflowed


# ---------------------------------------------------------------------------------------------
# Posit quire


def posit_dot_quire(fmt, a_bits, b_bits):
    """Posit dot product with quire semantics: exact products, exact sum, one posit rounding.

    Products of the decoded posits are exact (`formats.exact_product`), summed exactly (the quire
    is modelled without a size limit: it equals SoftPosit's quire8 / quire16 as long as no partial
    sum exceeds the quire's carry-guard range, e.g. fewer than 2^7 products of maxpos^2 for
    posit(8, 0)), then rounded once to `fmt` (`posit.round_exact`: nearest, ties to even code,
    never to 0 or NaR unless the sum is exactly 0). Any NaR operand gives NaR. Returns the code(s).
    """
    f = F.get_format(fmt)
    if f.kind != "posit":
        allowed = [n for n in F.format_names() if F.get_format(n).kind == "posit"]
        raise ValueError(f"format {f.name!r} is not a posit; allowed: {', '.join(allowed)}")
    a, b, lead = _rows(f, a_bits, f, b_bits)
    acc, lsb, special = _fixed_rows(f, a, f, b)
    codes = np.array([f.nar if s else _posit.round_exact(f.n, f.es, v, lsb)
                      for v, s in zip(acc, special)], dtype=np.int64)
    return _shape_result(f._out(codes), lead)
