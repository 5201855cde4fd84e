"""Posit(n, es) arithmetic from the posit standard, as exact integer operations (SPEC section 2).

A posit code is an n-bit word. 0 is zero and 1 << (n-1) is NaR ("not a real"); any other code is
negated in two's complement if its top bit is set, and the remaining n-1 bits are read as
a regime (a run of r equal bits ended by the opposite bit or by the end of the word; k = r-1 for
a run of ones, k = -r for a run of zeros), then es exponent bits e (zero-padded when the word ends
early), then fraction bits f (F of them). The value is (-1)^s * 2^(k * 2^es + e) * (1 + f / 2^F).

Rounding (`round_exact`) follows the standard: the exact real is written as an unbounded bit string
in the layout above and cut to n-1 bits with round-to-nearest, ties to the even code (the tie point
is the code of the (n+1)-bit posit between two neighbours, so it is the geometric mean where
exponent bits are cut and the arithmetic mean where fraction bits are cut). Non-zero values never
round to 0 or NaR: magnitudes above maxpos = 2^((n-2) * 2^es) give maxpos and below minpos give
minpos.

SoftPosit (the `softposit` package) is the reference for posit(8, 0) and posit(16, 1): `formats.py`
decodes and encodes those through it, and the tests check this module against it code for code
(and against SoftPosit's posit(n, 2) for other n). posit(4, 1) has no SoftPosit binding and uses
this module, checked against an independent slow reference.
"""

import functools
import math
import operator

import numpy as np


def _check(n, es):
    n, es = operator.index(n), operator.index(es)
    if not 3 <= n <= 32 or not 0 <= es <= 4:
        raise ValueError(f"posit({n}, {es}) is not supported; allowed: n in 3..32, es in 0..4")
    return n, es


def max_fraction_bits(n, es):
    """Most fraction bits any posit(n, es) code carries (the shortest regime is 2 bits)."""
    return max(n - 3 - es, 0)


def maxpos_scale(n, es):
    """log2 of maxpos; minpos is 2 ** -maxpos_scale."""
    return (n - 2) << es


def decode_fields(n, es, code):
    """(sign, scale, fraction, fraction_bits) of a posit code, or None for 0 and NaR.

    The value is (-1)^sign * 2^scale * (1 + fraction / 2^fraction_bits).
    """
    n, es = _check(n, es)
    code = operator.index(code)
    if not 0 <= code < 1 << n:
        raise ValueError(f"posit({n}, {es}) code {code} out of range 0..{(1 << n) - 1}")
    if code in (0, 1 << (n - 1)):
        return None
    sign = code >> (n - 1)
    if sign:
        code = (-code) & ((1 << n) - 1)
    body = code & ((1 << (n - 1)) - 1)  # n-1 bits after the sign
    nbits = n - 1
    first = (body >> (nbits - 1)) & 1
    run = 0
    while run < nbits and ((body >> (nbits - 1 - run)) & 1) == first:
        run += 1
    k = run - 1 if first else -run
    used = min(run + 1, nbits)  # regime run plus its terminating bit, if there is room
    rest = nbits - used
    exp_avail = min(es, rest)
    e = ((body >> (rest - exp_avail)) & ((1 << exp_avail) - 1)) << (es - exp_avail)
    frac_bits = rest - exp_avail
    frac = body & ((1 << frac_bits) - 1)
    return sign, (k << es) + e, frac, frac_bits


def decode_exact(n, es, code):
    """(mantissa, exponent) with value mantissa * 2^exponent, or None for NaR.

    The mantissa is signed and always carries `max_fraction_bits(n, es)` fraction bits, so
    |mantissa| is in [2^F, 2^(F+1)) with F = max_fraction_bits (0 has mantissa 0 and the smallest
    exponent, -maxpos_scale - F). This fixed-width significand is what a posit datapath unpacks to.
    """
    n, es = _check(n, es)
    fmax = max_fraction_bits(n, es)
    if code == 1 << (n - 1):
        return None
    if code == 0:
        return 0, -maxpos_scale(n, es) - fmax
    sign, scale, frac, fbits = decode_fields(n, es, code)
    mant = ((1 << fbits) | frac) << (fmax - fbits)
    return (-mant if sign else mant), scale - fmax


def round_exact(n, es, mant, exp):
    """Posit(n, es) code of the exact real mant * 2^exp (Python ints), rounded as the standard says."""
    n, es = _check(n, es)
    mant, exp = operator.index(mant), operator.index(exp)
    if mant == 0:
        return 0
    sign = mant < 0
    mag = -mant if sign else mant
    top = mag.bit_length() - 1
    scale = top + exp  # floor(log2 |x|)
    limit = maxpos_scale(n, es)
    if scale >= limit:  # |x| >= maxpos
        body = (1 << (n - 1)) - 1
    elif scale < -limit:  # |x| < minpos
        body = 1
    else:
        k, e = scale >> es, scale & ((1 << es) - 1)
        if k >= 0:
            regime, rlen = ((1 << (k + 1)) - 1) << 1, k + 2
        else:
            regime, rlen = 1, -k + 1
        frac = mag - (1 << top)  # `top` fraction bits below the leading one
        full = (((regime << es) | e) << top) | frac
        length = rlen + es + top
        cut = length - (n - 1)
        if cut <= 0:
            body = full << -cut
        else:
            body, rem = full >> cut, full & ((1 << cut) - 1)
            half = 1 << (cut - 1)
            if rem > half or (rem == half and body & 1):
                body += 1
    return ((-body) & ((1 << n) - 1)) if sign else body


def round_float(n, es, x):
    """Posit(n, es) code of a Python float (exact value); NaN and infinities give NaR."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return 1 << (n - 1)
    num, den = x.as_integer_ratio()  # den is a power of two
    return round_exact(n, es, num, -(den.bit_length() - 1))


@functools.lru_cache(maxsize=None)
def tables(n, es):
    """Per-code arrays (mantissa int64, exponent int64, is_nar bool, value float64) for all codes."""
    n, es = _check(n, es)
    if n > 18:
        raise ValueError(f"posit({n}, {es}) tables are only built for n <= 18")
    count = 1 << n
    mant = np.zeros(count, dtype=np.int64)
    expo = np.zeros(count, dtype=np.int64)
    nar = np.zeros(count, dtype=bool)
    value = np.zeros(count, dtype=np.float64)
    for code in range(count):
        dec = decode_exact(n, es, code)
        if dec is None:
            nar[code] = True
            value[code] = np.nan
            expo[code] = -maxpos_scale(n, es) - max_fraction_bits(n, es)
        else:
            mant[code], expo[code] = dec
            value[code] = math.ldexp(dec[0], dec[1])
    for arr in (mant, expo, nar, value):
        arr.setflags(write=False)
    return mant, expo, nar, value
