"""Posits (golden/posit.py and the posit formats) against SoftPosit and a slow independent model."""
from fractions import Fraction

import numpy as np
import pytest
import softposit as sp

from nmforge.golden import formats as F
from nmforge.golden import posit as P


# ------------------------------------------------------------------ slow independent reference


def slow_decode(n, es, code):
    """Value of a posit code as a Fraction (None for NaR), by reading its bit string."""
    if code == 0:
        return Fraction(0)
    if code == 1 << (n - 1):
        return None
    neg = code >= 1 << (n - 1)
    if neg:
        code = (1 << n) - code
    s = format(code, f"0{n}b")[1:]
    run = len(s) - len(s.lstrip(s[0]))
    k = run - 1 if s[0] == "1" else -run
    rest = s[run + 1:]
    e = int((rest[:es] + "0" * es)[:es] or "0", 2)
    frac = rest[es:]
    f = Fraction(int(frac, 2), 2 ** len(frac)) if frac else Fraction(0)
    v = Fraction(2) ** (k * 2**es + e) * (1 + f)
    return -v if neg else v


def slow_round(n, es, x):
    """The standard's rounding by brute force: the tie point between two neighbouring n-bit codes
    is the value of the (n+1)-bit code between them; ties go to the even code."""
    if x == 0:
        return 0
    neg = x < 0
    x = abs(x)
    vals = [slow_decode(n, es, c) for c in range(1, 1 << (n - 1))]  # increasing, codes 1..
    if x >= vals[-1]:
        c = len(vals)
    elif x <= vals[0]:
        c = 1
    else:
        c = next(i for i, v in enumerate(vals, start=1) if v > x) - 1  # vals[c-1] <= x < vals[c]
        if vals[c - 1] != x:
            tie = slow_decode(n + 1, es, 2 * c + 1)
            if x > tie or (x == tie and c % 2):
                c += 1
    return (1 << n) - c if neg else c


def posit_values(n, es):
    return [slow_decode(n, es, c) for c in range(1 << n)]


# ------------------------------------------------------------------ generic module vs slow model


@pytest.mark.parametrize("n,es", [(4, 1), (5, 0), (6, 2), (8, 0), (8, 1), (9, 2)])
def test_decode_exact_vs_slow(n, es):
    for code in range(1 << n):
        ref = slow_decode(n, es, code)
        got = P.decode_exact(n, es, code)
        if ref is None:
            assert got is None
        else:
            assert Fraction(got[0]) * Fraction(2) ** got[1] == ref


@pytest.mark.parametrize("n,es", [(4, 1), (5, 1), (6, 0), (6, 2)])
def test_round_exact_vs_slow(n, es):
    vals = sorted({abs(v) for v in posit_values(n + 2, es) if v is not None})
    probes = set()
    for v in vals:
        probes |= {v, v * Fraction(1001, 1000), v * Fraction(999, 1000)}
    probes |= {Fraction(1, 10**9), Fraction(10**9)}
    for x in sorted(probes):
        for sx in (x, -x):
            num, den = sx.numerator, sx.denominator
            if den & (den - 1) == 0:  # dyadic: round_exact takes mant * 2^exp
                got = P.round_exact(n, es, num, -(den.bit_length() - 1))
                assert got == slow_round(n, es, sx), (n, es, sx)


def test_posit4_1_every_code_and_tie():
    fmt = F.get_format("posit4_1")
    codes = fmt.codes()
    vals = fmt.decode(codes)
    for c in range(16):
        ref = slow_decode(4, 1, c)
        assert (np.isnan(vals[c]) if ref is None else vals[c] == ref)
    assert vals.tolist()[1:8] == [1 / 16, 1 / 4, 1 / 2, 1, 2, 4, 16]
    keep = ~np.isnan(vals)
    np.testing.assert_array_equal(fmt.encode(vals[keep]), codes[keep])
    x = [float(v) for v in posit_values(6, 1) if v is not None]
    assert fmt.encode(x).tolist() == [slow_round(4, 1, Fraction(v)) for v in x]
    assert fmt.encode([np.nan, np.inf, -np.inf]).tolist() == [8, 8, 8]


# ------------------------------------------------------------------ SoftPosit


def sp_decode(n, code):
    t = sp.posit8_t() if n == 8 else sp.posit16_t()
    t.v = int(code)
    return (sp.convertP8ToDouble if n == 8 else sp.convertP16ToDouble)(t)


@pytest.mark.parametrize("name,n,es", [("posit8_0", 8, 0), ("posit16_1", 16, 1)])
def test_softposit_decode_matches_generic(name, n, es):
    fmt = F.get_format(name)
    vals = fmt.decode(fmt.codes())
    mant, expo, nar, generic = P.tables(n, es)
    assert np.flatnonzero(np.isnan(vals)).tolist() == [1 << (n - 1)] == np.flatnonzero(nar).tolist()
    np.testing.assert_array_equal(vals, generic)
    step = 1 if n == 8 else 97
    for code in range(0, 1 << n, step):
        if code != 1 << (n - 1):
            assert vals[code] == sp_decode(n, code)


@pytest.mark.parametrize("name,n,es", [("posit8_0", 8, 0), ("posit16_1", 16, 1)])
def test_softposit_encode_matches_generic(name, n, es):
    """Every (n+1)-bit posit value (every code and every tie point) and their float64
    neighbours, random values, and values beyond maxpos / below minpos."""
    fmt = F.get_format(name)
    finer = P.tables(n + 1, es)[3]
    x = finer[np.isfinite(finer)]
    rng = np.random.default_rng(5)
    rand = np.ldexp(rng.random(20000) + 0.5, rng.integers(-2 * n - 2, 2 * n + 2, 20000))
    x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf), rand, -rand,
                        [1e30, -1e30, 1e-30, -1e-30, 0.0]])
    got = fmt.encode(x)
    ref = [P.round_float(n, es, v) for v in x.tolist()]
    np.testing.assert_array_equal(got, ref)
    assert fmt.encode([np.nan, np.inf]).tolist() == [1 << (n - 1)] * 2


@pytest.mark.parametrize("n", [4, 6, 8, 11])
def test_generic_es2_vs_softposit_pX2(n):
    """SoftPosit's posit(n, 2) checks the es > 0 paths of the generic model for other widths."""
    for code in range(1 << n):
        if code == 1 << (n - 1):
            continue
        p = sp.posit_2_t()
        p.v = code << (32 - n)
        dec = P.decode_exact(n, 2, code)
        assert sp.convertPX2ToDouble(p) == dec[0] * 2.0 ** dec[1]
    finer = P.tables(n + 1, 2)[3]
    x = finer[np.isfinite(finer)]
    for v in np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)]).tolist():
        assert sp.convertDoubleToPX2(v, n).v >> (32 - n) == P.round_float(n, 2, v), v


def test_posit_exact_value_form():
    m, e, s = F.exact_value("posit16_1", [0x4000, 0x0001, 0x7FFF, 0x8000, 0])
    assert m.tolist() == [4096, 4096, 4096, 0, 0]  # 12 fraction bits, hidden one at bit 12
    assert e.tolist() == [-12, -28 - 12, 28 - 12, -40, -40]
    assert s.tolist() == [F.FINITE, F.FINITE, F.FINITE, F.NAN, F.FINITE]


def test_bad_posit_parameters():
    with pytest.raises(ValueError, match="not supported"):
        P.decode_exact(2, 0, 1)
    with pytest.raises(ValueError, match="out of range"):
        P.decode_fields(8, 0, 256)
