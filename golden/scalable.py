"""Bit-exact semantics of the precision-scalable (Bit Fusion style) integer PE kind (SPEC section 3).

One lane of the PE takes an 8-bit activation word `a`, an 8-bit weight word `w` and a 3-bit mode
that travels with the weight. The lane's value for one beat is:

  code  name       lane value
  0     int8       a * w, both signed bytes                 (1 product)   subword_dot("int8")
  1     int4       sum of 2 signed nibble products           (2 products)  subword_dot("int4")
  2     int2       sum of 4 signed 2-bit field products      (4 products)  subword_dot("int2")
  3     off        0 (an idle lane; a and w are ignored)
  4     int16_ll   zext(a) * zext(w)                          one piece of an INT16 x INT16 product
  5     int16_hl   sext(a) * zext(w) * 2^8                    (a is a high byte, w a low byte)
  6     int16_lh   zext(a) * sext(w) * 2^8                    (a low, w high)
  7     int16_hh   sext(a) * sext(w) * 2^16                   (both high bytes)

(bit 2 of the code marks an INT16 piece, bit 0 says the activation byte is the signed high byte,
bit 1 says the weight byte is.) Sub-word lanes follow `golden.dot.subword_products` exactly: lane 0
is the low bits, every field is two's complement, field i of a multiplies field i of w only.

INT16 by composition: x = hi * 2^8 + lo with hi the signed high byte and lo the unsigned low byte,
so a * w = ll + hl * 2^8 + lh * 2^8 + hh * 2^16 with the four pieces above; `int16_schedule` lays an
INT16 dot product out as beats (each element's four pieces in one lane over four consecutive beats).

Per beat the PE adds the values of all N lanes exactly; the beat sums of a tile accumulate in a
signed `acc_width`-bit accumulator with `golden.gemm` semantics (wrap or saturate after each beat,
overflowed when any exact sum left the range). A PE built with int16=False treats codes 4..7
like code 3 (its lanes then contribute 0).
"""

import numpy as np

from .dot import subword_dot
from .gemm import _accumulate, per_beat
from .ints import int_array
from .nm import kept_pairs

MODE_CODES = {"int8": 0, "int4": 1, "int2": 2, "off": 3,
              "int16_ll": 4, "int16_hl": 5, "int16_lh": 6, "int16_hh": 7}
MODE_NAMES = {code: name for name, code in MODE_CODES.items()}
SUBWORD_CODES = {code: name for name, code in MODE_CODES.items() if code < 3}
MACS_PER_LANE = {"int8": 1, "int4": 2, "int2": 4}
INT16_PIECES = ("int16_ll", "int16_hl", "int16_lh", "int16_hh")


def _bytes(x, name):
    x = int_array(x, name).astype(np.int64)
    bad = (x < 0) | (x > 255)
    if bad.any():
        raise ValueError(f"{name} byte {x[bad].flat[0]} out of range 0..255")
    return x


def lane_values(modes, a_bytes, w_bytes, int16=True):
    """Each lane's value (table in the module docstring); arrays broadcast, int64 result."""
    modes = int_array(modes, "modes").astype(np.int64)
    if ((modes < 0) | (modes > 7)).any():
        raise ValueError(f"mode codes are 0..7, got {modes[(modes < 0) | (modes > 7)].flat[0]}")
    a, w = _bytes(a_bytes, "a"), _bytes(w_bytes, "w")
    modes, a, w = np.broadcast_arrays(modes, a, w)
    out = np.zeros(modes.shape, dtype=np.int64)
    for code, name in SUBWORD_CODES.items():
        sel = modes == code
        out[sel] = subword_dot(name, a[sel], w[sel])
    if int16:
        piece = modes >= 4
        a_hi, w_hi = (modes & 1).astype(bool), (modes & 2).astype(bool)
        sa = np.where(a_hi & (a >= 128), a - 256, a)
        sw = np.where(w_hi & (w >= 128), w - 256, w)
        shift = 8 * (a_hi.astype(np.int64) + w_hi.astype(np.int64))
        out[piece] = (sa * sw << shift)[piece]
    return out


def beat_sums(modes, a_bytes, w_bytes, int16=True):
    """Exact per-beat sums of (beats, N) lane arrays: what the PE adds to its accumulator."""
    return lane_values(modes, a_bytes, w_bytes, int16).sum(axis=-1)


def scalable_tile(modes, a_bytes, w_bytes, acc_width, overflow, int16=True):
    """Result of one tile (beats, N): (value, overflowed), beats accumulated in order."""
    sums = np.atleast_1d(beat_sums(modes, a_bytes, w_bytes, int16))
    acc, overflowed = _accumulate(sums.reshape(-1, 1, 1), acc_width, overflow)
    return int(acc[0, 0]), overflowed


def sparse_scalable_gemm(a_words, w_words, modes, indices, n, m, acc_width, overflow, int16=True,
                         beat_groups=1):
    """C = A x W on scalable PEs from W's compressed N:M form: per output, the tile of beats
    g = 0..K/M-1 with lane l pairing activation word a[i, g*M + indices[g*N+l, j]] with weight
    word w_words[g*N+l, j] in mode modes[g*N+l, j]; beat sums accumulated in order
    (`beat_groups` consecutive groups summed exactly per beat: a dot-product PE's beat).
    Returns (c (rows, cols) int64, overflowed)."""
    sums = sparse_scalable_group_sums(a_words, w_words, modes, indices, n, m, int16)
    return _accumulate(per_beat(sums, beat_groups), acc_width, overflow)


def sparse_scalable_group_sums(a_words, w_words, modes, indices, n, m, int16=True):
    """Exact sums (G, rows, cols) of each K-group's N lane values (as sparse_scalable_gemm)."""
    acts, weights = kept_pairs(a_words, w_words, indices, n, m)   # (rows, cols, G, N)
    _, lane_modes = kept_pairs(a_words, modes, indices, n, m)
    return beat_sums(lane_modes, acts, weights, int16).transpose(2, 0, 1)


def split_int16(x):
    """(lo, hi) bytes of signed 16-bit values: x = sext(hi) * 2^8 + lo, both as codes 0..255."""
    x = int_array(x, "x").astype(np.int64)
    bad = (x < -(1 << 15)) | (x >= 1 << 15)
    if bad.any():
        raise ValueError(f"value {x[bad].flat[0]} is not a signed 16-bit integer")
    return x & 0xFF, (x >> 8) & 0xFF


def int16_schedule(a16, w16, n):
    """Beats computing the INT16 dot product sum_k a16[k] * w16[k] on an N-lane scalable PE.

    Element k goes to lane k % N of block k // N; each block is four consecutive beats carrying
    the pieces ll, hl, lh, hh (activation bytes lo, hi, lo, hi; weight bytes lo, lo, hi, hi), so a
    lane's multiplier sees one 16-bit operand pair over four beats and the PE's per-lane shift
    (0, 8, 8, 16) recombines it. Unused lanes of the last block are `off`.
    Returns (modes, a_bytes, w_bytes), each int64 of shape (4 * ceil(K / N), N).
    """
    a_lo, a_hi = split_int16(a16)
    w_lo, w_hi = split_int16(w16)
    if a_lo.ndim != 1 or a_lo.shape != w_lo.shape or a_lo.size == 0:
        raise ValueError("a16 and w16 must be non-empty 1-D arrays of equal length")
    blocks = -(-a_lo.size // n)
    modes = np.full((blocks, 4, n), MODE_CODES["off"], dtype=np.int64)
    a = np.zeros((blocks, 4, n), dtype=np.int64)
    w = np.zeros((blocks, 4, n), dtype=np.int64)
    k = np.arange(a_lo.size)
    for p, name in enumerate(INT16_PIECES):
        code = MODE_CODES[name]
        modes[k // n, p, k % n] = code
        a[k // n, p, k % n] = np.where(code & 1, a_hi, a_lo)
        w[k // n, p, k % n] = np.where(code & 2, w_hi, w_lo)
    return modes.reshape(-1, n), a.reshape(-1, n), w.reshape(-1, n)
