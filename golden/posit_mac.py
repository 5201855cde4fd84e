"""Bit-exact model of the `posit` PE kind's MAC unit (rtl/mac_posit.py): one output tile's result
code and its `overflow` flag, including the quire's finite size.

A tile is B beats of N (activation, weight) posit code pairs, both of the same format
(posit8_0 or posit16_1), given as code arrays of shape (..., B, N); leading axes are independent
tiles. Every product is exact and is added exactly into a quire, a two's-complement fixed-point
register laid out as SoftPosit's:

  format     quire bits Q   LSB weight            largest product   carry-guard headroom
  posit8_0   32 (quire8)    2^-12 = minpos^2      2^12 = maxpos^2   2^7 products of maxpos^2
  posit16_1  128 (quire16)  2^-56 = minpos^2      2^56 = maxpos^2   2^15 products of maxpos^2

Every product of two posits is a multiple of minpos^2, so nothing is lost below the LSB.
Order: per beat the N products are summed exactly (the adder tree), then the beat's sum is
added to the quire. Bound: after every beat, the partial sum S (in LSB units) must satisfy
|S| < 2^(Q-1); otherwise the quire has overflowed its carry-guard bits (SoftPosit would wrap
silently, and its quire pattern 100...0 is NaR), the tile is poisoned: result NaR, flag set.
Without an overflow the result equals `dot.posit_dot_quire` (the unbounded quire), i.e. the exact
sum rounded once to the format (nearest, ties to the even code, never to 0 or NaR unless the sum
is exactly 0). Any NaR operand makes the result NaR; NaR products count as 0 in the bound check,
and NaR alone does not raise the flag.
"""

import numpy as np

from . import formats as F
from . import posit as P

POSIT_MAC_FORMATS = ("posit8_0", "posit16_1")
QUIRE_BITS = {"posit8_0": 32, "posit16_1": 128}


def _format(fmt):
    f = F.get_format(fmt)
    if f.name not in POSIT_MAC_FORMATS:
        raise ValueError(f"format {f.name!r} is not a posit PE format; allowed: "
                         f"{', '.join(POSIT_MAC_FORMATS)}")
    return f


def quire_bits(fmt):
    """Width Q of the format's quire (SoftPosit quire8 / quire16)."""
    return QUIRE_BITS[_format(fmt).name]


def quire_lsb_exp(fmt):
    """log2 of the weight of the quire's LSB: minpos^2 = 2^(-2 * maxpos_scale)."""
    f = _format(fmt)
    return -2 * P.maxpos_scale(f.n, f.es)


def max_safe_products(fmt):
    """Products of maxpos^2 (the largest magnitude) the quire holds without overflow: any tile of
    at most this many products never overflows, one more maxpos^2 product than this does."""
    f = _format(fmt)
    largest = 1 << (2 * P.maxpos_scale(f.n, f.es) - quire_lsb_exp(f))  # maxpos^2 in LSB units
    return ((1 << (quire_bits(f) - 1)) - 1) // largest


def quire_products(fmt, a_bits, b_bits):
    """(products, nar): exact products in quire LSB units (Python ints, object array) and
    whether the pair holds a NaR, for broadcast code arrays."""
    f = _format(fmt)
    mant, exp, special = F.exact_product(f, a_bits, f, b_bits)
    shift = (exp - quire_lsb_exp(f)).astype(object)
    prods = np.where(special == F.FINITE, mant.astype(object), 0)
    # exact_product's exponent can sit below the quire LSB (fixed fraction width), but then the
    # mantissa has that many trailing zeros: shift right exactly, checked.
    out = np.empty(prods.shape, dtype=object)
    flat_p, flat_s, flat_o = prods.ravel(), shift.ravel(), out.reshape(-1)
    for i in range(flat_p.size):
        p, s = int(flat_p[i]), int(flat_s[i])
        if s >= 0:
            flat_o[i] = p << s
        else:
            assert p & ((1 << -s) - 1) == 0, "a posit product below the quire LSB"
            flat_o[i] = p >> -s
    return out, special != F.FINITE


def posit_mac(fmt, a_bits, b_bits, quire=None):
    """Result codes and overflow flags of tiles (..., B, N) of posit code pairs (see module
    docstring). `quire`: the quire width Q (default QUIRE_BITS of the format; smaller values
    model a tighter bound, e.g. for tests)."""
    f = _format(fmt)
    q = quire_bits(f) if quire is None else int(quire)
    a = f.check_bits(a_bits)
    b = f.check_bits(b_bits)
    if a.ndim < 2 or a.shape != b.shape:
        raise ValueError(f"operands must have equal shapes (..., B, N), got {a.shape} and {b.shape}")
    if a.shape[-1] < 1 or a.shape[-2] < 1:
        raise ValueError("a tile needs at least one beat of at least one lane")
    lead = a.shape[:-2]
    a = a.reshape((-1,) + a.shape[-2:])
    b = b.reshape((-1,) + b.shape[-2:])
    prods, nar = quire_products(f, a, b)
    limit = 1 << (q - 1)
    lsb = quire_lsb_exp(f)
    codes = np.zeros(a.shape[0], dtype=np.int64)
    flags = np.zeros(a.shape[0], dtype=bool)
    for t in range(a.shape[0]):
        total, over = 0, False
        for beat in prods[t]:
            total += int(sum(int(x) for x in beat))
            over |= not -limit < total < limit
        flags[t] = over
        codes[t] = f.nar if over or nar[t].any() else P.round_exact(f.n, f.es, total, lsb)
    return f._out(codes).reshape(lead), flags.reshape(lead)
