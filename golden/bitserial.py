"""Bit-serial integer GEMM (SPEC section 3, the bit-serial PE), bit-exact, in beat space.

A P-bit two's-complement weight w (1 <= P <= weight_width, the run-time precision chosen per GEMM
by the host) is sent as P consecutive beats of its N:M group, plane p = 0 .. P-1 carrying bit p
of every kept weight; the activations and indices repeat on each of these beats, and the last one
is marked `msb`: its bit weighs -2^(P-1) (the two's-complement sign plane), so
w = sum_{p<P-1} bit_p * 2^p - bit_{P-1} * 2^(P-1). P = 1 gives the weights {-1, 0}.

One beat b of column j adds  v_b = (-1 if msb_b else 1) * 2^plane_b * sum_l a_l * bit_l  over
its N kept pairs. The beats of a tile are accumulated in order with golden.gemm's integer
accumulation (exact sum per update, then wrap or saturate to `acc_width` signed bits; a sum
outside the range raises the overflow flag). So when nothing overflows, the result equals
golden.gemm.sparse_gemm_int of the P-bit weights (tested), and otherwise it is what the
hardware's per-beat accumulator does.

Malformed plane sequences also raise the flag (the hardware computes them as given, but flags
them): a plane >= weight_width, a plane other than the expected one (0 at the tile's start and
after an msb beat, else the previous plane + 1), or a tile whose last beat is not an msb beat.
"""
import operator

import numpy as np

from .gemm import _accumulate, per_beat
from .ints import int_array, int_range
from .nm import kept_pairs

MAX_WEIGHT_WIDTH = 16


def check_precision(precision, weight_width=MAX_WEIGHT_WIDTH):
    precision = operator.index(precision)
    if not 1 <= precision <= weight_width:
        raise ValueError(f"precision must be in 1..{weight_width}, got {precision}")
    return precision


def bit_planes(w, precision):
    """The P two's-complement bit-planes of signed P-bit integers `w`: int64 of shape
    (P,) + w.shape, planes[p] = bit p of w (0 or 1)."""
    precision = check_precision(precision)
    w = int_array(w, "w").astype(np.int64)
    lo, hi = int_range(precision)
    bad = (w < lo) | (w > hi)
    if bad.any():
        raise ValueError(f"weight {w[bad].flat[0]} outside the signed {precision}-bit range [{lo}, {hi}]")
    return np.stack([(w >> p) & 1 for p in range(precision)])


def from_planes(planes):
    """Inverse of `bit_planes`: the signed integers whose planes (P, ...) are given."""
    planes = int_array(planes, "planes").astype(np.int64)
    top = planes.shape[0] - 1
    weights = np.array([1 << p for p in range(top)] + [-(1 << top)], dtype=np.int64)
    return np.tensordot(weights, planes, axes=1)


def plane_beats(a, values, indices, n, precision, block=1):
    """Expand one GEMM with N:M compressed P-bit weights into beat space.

    a (rows, K), values/indices (K/M*N, cols) -> (a_beats (rows, K*P), bits (K/M*P*N, cols),
    beat_indices (K/M*P*N, cols), planes (K/M*P,), msb (K/M*P,)): N:M group g becomes beats
    g*P .. g*P+P-1, beat g*P+p carrying group g's activations and indices and bit p of its
    weights, msb set on p = P-1. With `block` > 1 (a dot-product PE's beat of `block` groups)
    the groups go in blocks, plane-major inside each: block b's plane p is the `block` beats
    from (b*P + p)*block on, so one array beat holds one plane of `block` groups."""
    precision = check_precision(precision)
    a = int_array(a, "a").astype(np.int64)
    values = int_array(values, "values")
    indices = int_array(indices, "indices")
    n = operator.index(n)
    groups, cols = values.shape[0] // n, values.shape[1]
    if values.shape[0] != groups * n or groups == 0 or a.shape[1] % groups:
        raise ValueError(f"values {values.shape} and a {a.shape} do not form {n}-value groups")
    m = a.shape[1] // groups
    block = operator.index(block)
    if block < 1 or groups % block:
        raise ValueError(f"{groups} groups do not form blocks of {block}")
    blocks = groups // block
    planes = bit_planes(values, precision).reshape(precision, blocks, block, n, cols)
    bits = planes.transpose(1, 0, 2, 3, 4).reshape(groups * precision * n, cols)
    beat_indices = np.repeat(indices.reshape(blocks, 1, block * n, cols), precision, axis=1)
    beat_indices = beat_indices.reshape(groups * precision * n, cols)
    a_beats = np.repeat(a.reshape(a.shape[0], blocks, 1, block * m), precision, axis=2)
    a_beats = a_beats.reshape(a.shape[0], groups * precision * m)
    plane = np.tile(np.repeat(np.arange(precision), block), blocks)
    msb = (plane == precision - 1).astype(np.int64)
    return a_beats, bits, beat_indices, plane, msb


def malformed_columns(planes, msb, weight_width):
    """Per column, whether the tile's plane sequence (beats, cols) is malformed (module
    docstring): a plane >= weight_width, an unexpected plane, or a last beat without msb."""
    planes = int_array(planes, "planes").astype(np.int64)
    msb = int_array(msb, "msb").astype(np.int64)
    bad = (planes >= weight_width).any(axis=0) | (msb[-1] == 0)
    expected = np.zeros(planes.shape[1], dtype=np.int64)
    for plane, sign in zip(planes, msb):
        bad |= plane != expected
        expected = np.where(sign != 0, 0, plane + 1)
    return bad


def bitserial_gemm(a, bits, indices, planes, msb, n, m, acc_width, overflow,
                   weight_width=MAX_WEIGHT_WIDTH, beat_groups=1):
    """The bit-serial array's GEMM in beat space: returns (c, overflowed).

    a (rows, B*M) activations, bits/indices (B*N, cols) the weight bits and indices of the B
    beats, planes/msb the beats' plane indices and sign flags, shape (B,) (every column alike)
    or (B, cols). Beat b adds v_b (module docstring); the B beats of the tile are accumulated in
    order (golden.gemm accumulation, `acc_width` bits, `overflow` = "wrap" or "saturate").
    overflowed: an accumulation left the range, or a column's plane sequence is malformed.
    With `beat_groups` > 1 (a dot-product PE) each run of that many beats is one array beat of
    one plane (plane_beats with `block`): summed exactly, then accumulated.
    """
    beat_values, planes, msb = bitserial_beat_values(a, bits, indices, planes, msb, n, m)
    c, overflowed = _accumulate(per_beat(beat_values, beat_groups), acc_width, overflow)
    planes, msb = planes[beat_groups - 1::beat_groups], msb[beat_groups - 1::beat_groups]
    return c, overflowed or bool(malformed_columns(planes, msb, weight_width).any())


def bitserial_beat_values(a, bits, indices, planes, msb, n, m):
    """(v (B, rows, cols), planes (B, cols), msb (B, cols)): each beat's exact value v_b =
    (-1)^msb * 2^plane * sum a * bit (module docstring), operands as bitserial_gemm's."""
    bits = int_array(bits, "bits").astype(np.int64)
    if ((bits != 0) & (bits != 1)).any():
        raise ValueError("weight bits must be 0 or 1")
    acts, kept_bits = kept_pairs(int_array(a, "a").astype(np.int64), bits, indices, n, m)
    rows, cols, beats, _ = acts.shape  # (rows, cols, B, N): the pairs of each beat
    planes = np.broadcast_to(int_array(planes, "planes").astype(np.int64).reshape(beats, -1),
                             (beats, cols))
    msb = np.broadcast_to(int_array(msb, "msb").astype(np.int64).reshape(beats, -1), (beats, cols))
    if (planes < 0).any() or (planes >= MAX_WEIGHT_WIDTH).any():
        raise ValueError(f"plane indices must be in 0..{MAX_WEIGHT_WIDTH - 1} (at most 4 bits)")
    sums = (acts * kept_bits).sum(axis=3).transpose(2, 0, 1)  # (B, rows, cols)
    return (sums << planes[:, None, :]) * np.where(msb != 0, -1, 1)[:, None, :], planes, msb
