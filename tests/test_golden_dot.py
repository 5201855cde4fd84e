"""Dot-product golden models (golden/dot.py, golden/mx.py) against slow Fraction references."""
import math
from fractions import Fraction

import numpy as np
import pytest
import softposit as sp

from nmforge.golden import dot as D
from nmforge.golden import formats as F
from nmforge.golden import mx as M
from nmforge.golden import posit as P
from nmforge.golden.gemm import gemm_int

FLT_MAX = Fraction(float(np.finfo(np.float32).max))
FP32_OVERFLOW = FLT_MAX + Fraction(2) ** 103  # max + half an ulp


def fp32_of(x):
    """Independent RNE of a Fraction to float32: nearest of the float32 neighbours of float(x)."""
    if x == 0:
        return np.float32(0.0)
    if abs(x) >= FP32_OVERFLOW:
        return np.float32(math.copysign(math.inf, x))
    with np.errstate(over="ignore"):
        f = np.float32(float(x))
    if np.isinf(f):
        f = np.float32(math.copysign(float(FLT_MAX), x))
    cands = {f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))}
    cands = [c for c in cands if np.isfinite(c)]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - x), int(np.array(c).view(np.uint32)) & 1))
    return best


def dec(name, code):
    v = F.decode(name, int(code)).item()
    return v if not math.isfinite(v) else Fraction(v)


def random_finite(name, rng, size):
    fmt = F.get_format(name)
    codes = fmt.codes()
    ok = np.isfinite(fmt.decode(codes))
    return rng.choice(codes[ok], size=size)


PAIRS = [("fp8_e4m3", "fp8_e4m3"), ("fp8_e5m2", "fp8_e5m2"), ("fp8_e4m3", "fp8_e5m2"),
         ("fp6_e3m2", "fp6_e2m3"), ("fp4_e2m1", "fp4_e2m1"), ("bf16", "bf16"), ("mxint8", "fp8_e4m3"),
         ("int8", "int8")]


# ------------------------------------------------------------------ fp dots vs references


@pytest.mark.parametrize("fa,fb", PAIRS)
def test_fp_dot_exact_vs_fraction(fa, fb):
    rng = np.random.default_rng(11)
    a = random_finite(fa, rng, (40, 16))
    b = random_finite(fb, rng, (40, 16))
    exact = D.fp_dot_exact(fa, a, fb, b, output="exact")
    rounded = D.fp_dot_exact(fa, a, fb, b)
    assert rounded.dtype == np.float32 and rounded.shape == (40,)
    for r in range(40):
        ref = sum((dec(fa, x) * dec(fb, y) for x, y in zip(a[r], b[r])), Fraction(0))
        assert exact[r] == ref
        got, want = rounded[r], fp32_of(ref)
        assert got == want and np.signbit(got) == np.signbit(want)


@pytest.mark.parametrize("fa,fb", PAIRS)
def test_fp_dot_fp32_vs_slow_loop(fa, fb):
    rng = np.random.default_rng(12)
    a = random_finite(fa, rng, (40, 16))
    b = random_finite(fb, rng, (40, 16))
    got = D.fp_dot_fp32(fa, a, fb, b)
    for r in range(40):
        acc = np.float32(0.0)
        for x, y in zip(a[r], b[r]):
            p = fp32_of(dec(fa, x) * dec(fb, y))
            if np.isfinite(p) and np.isfinite(acc):
                acc = fp32_of(Fraction(float(acc)) + Fraction(float(p)))
            else:  # inf / NaN arithmetic: IEEE rules
                with np.errstate(invalid="ignore"):
                    acc = np.float32(acc + p)
        assert got[r] == acc or (np.isnan(got[r]) and np.isnan(acc))


def test_fixed_point_dot_and_width():
    acc, lsb, special = D.fixed_point_dot("fp8_e4m3", [0x7E, 0x01], "fp8_e4m3", [0x7E, 0x01])
    assert lsb == -18 and special == F.FINITE
    assert Fraction(acc) * Fraction(2) ** lsb == Fraction(448 * 448) + Fraction(1, 2**18)
    width = D.accumulator_bits("fp8_e4m3", "fp8_e4m3", 32)
    assert width == (32 * 448 * 448 * 2**18).bit_length() + 1
    assert D.accumulator_bits("fp4_e2m1", "fp4_e2m1", 1) == 9  # 6*6 = 144 units of 2^-2: 8 bits + sign
    batch, _, _ = D.fixed_point_dot("fp4_e2m1", [[1, 2], [3, 4]], "fp4_e2m1", [1, 1])
    assert batch.shape == (2,)


def test_fp32_accumulation_order_matters():
    # E5M2 products 1*1 and 2^-12 * 2^-12 = 2^-24 (half an FP32 ulp of 1):
    one, small = 0x3C, int(F.encode("fp8_e5m2", 2.0**-12))
    a = [one, small, small]
    fwd = D.fp_dot_fp32("fp8_e5m2", a, "fp8_e5m2", a)
    rev = D.fp_dot_fp32("fp8_e5m2", a[::-1], "fp8_e5m2", a[::-1])
    assert fwd == 1.0  # 1 + 2^-24 ties to 1, twice
    assert rev == 1 + 2.0**-23  # 2^-24 + 2^-24 first, then exact
    assert D.fp_dot_exact("fp8_e5m2", a, "fp8_e5m2", a) == 1 + 2.0**-23
    assert D.fp_dot_exact("fp8_e5m2", a[::-1], "fp8_e5m2", a[::-1]) == 1 + 2.0**-23


def test_fp32_accumulation_cancellation():
    # E4M3: 448*448 + 2^-9*2^-9 - 448*448: FP32 loses the tiny product, exact keeps it.
    big, tiny = 0x7E, 0x01
    a, b = [big, tiny, big | 0x80], [big, tiny, big]
    assert D.fp_dot_fp32("fp8_e4m3", a, "fp8_e4m3", b) == 0.0
    assert D.fp_dot_exact("fp8_e4m3", a, "fp8_e4m3", b) == np.float32(2.0**-18)


def test_nan_inf_corners():
    e5 = "fp8_e5m2"
    inf, ninf, zero, one, nan = 0x7C, 0xFC, 0x00, 0x3C, 0x7E
    cases = {  # (a, b) -> expected for both accumulations
        ((inf, one), (zero, one)): "nan",  # inf * 0
        ((inf, ninf), (one, one)): "nan",  # inf + -inf
        ((inf, one), (one, one)): "inf",
        ((ninf, one), (one, 0x7B)): "-inf",
        ((nan, one), (one, one)): "nan",
        ((inf, inf), (one, 0xBC)): "nan",  # +inf and -inf products
    }
    for (a, b), want in cases.items():
        for fn in (D.fp_dot_exact, D.fp_dot_fp32):
            got = fn(e5, list(a), e5, list(b))
            assert (np.isnan(got) if want == "nan" else got == float(want)), (a, b, fn.__name__)
    assert np.isnan(D.fp_dot_exact("fp8_e4m3", [0x7F, 0x00], "fp8_e4m3", [0x00, 0x00]))
    assert math.isnan(D.fp_dot_exact(e5, [inf], e5, [zero], output="exact"))


def test_bf16_fp32_overflow_vs_exact():
    big = 0x7F7F  # largest bf16: products overflow FP32, but they cancel exactly
    a, b = [big, big, 0x3F80], [big, big | 0x8000, 0x3F80]
    assert np.isnan(D.fp_dot_fp32("bf16", a, "bf16", b))  # inf + -inf
    assert D.fp_dot_exact("bf16", a, "bf16", b) == 1.0
    assert np.isinf(D.fp_dot_exact("bf16", [big, big], "bf16", [big, big]))  # exact sum > FP32 max


def test_fp32_init_and_signed_zero():
    assert D.fp_dot_fp32("fp8_e4m3", [0x38], "fp8_e4m3", [0x38], init=2.0) == 3.0
    z = D.fp_dot_fp32("fp8_e4m3", [0x80], "fp8_e4m3", [0x38])  # -0 product, +0 start
    assert z == 0 and not np.signbit(z)
    assert not np.signbit(D.fp_dot_exact("fp8_e4m3", [0x80], "fp8_e4m3", [0x38]))


def test_round_exact_edges():
    assert D.round_exact(1, -150) == 0.0  # exactly half the smallest subnormal: ties to 0
    assert D.round_exact(3, -151) == 2.0**-149  # 0.75 of it: up
    assert D.round_exact(-1, -150) == 0.0 and math.copysign(1, D.round_exact(-1, -150)) == -1
    assert D.round_exact((1 << 24) - 1, 104) == float(FLT_MAX)
    assert D.round_exact((1 << 25) - 1, 103) == math.inf  # FLT_MAX + half ulp ties to inf
    assert D.round_exact((1 << 26) - 3, 102) == float(FLT_MAX)  # just below the tie
    rng = np.random.default_rng(4)
    for _ in range(3000):
        m = int(rng.integers(-(1 << 62), 1 << 62)) >> int(rng.integers(0, 60))
        e = int(rng.integers(-220, 120))
        assert D.round_to_fp32(m, e) == fp32_of(Fraction(m) * Fraction(2) ** e)


def test_dot_argument_errors():
    with pytest.raises(ValueError, match="unknown format 'fp7'"):
        D.fp_dot_exact("fp7", [0], "fp8_e4m3", [0])
    with pytest.raises(ValueError, match="'posit8_0' is not supported for fp dot products; allowed:"):
        D.fp_dot_fp32("posit8_0", [0], "fp8_e4m3", [0])
    with pytest.raises(ValueError, match="operand lengths differ"):
        D.fp_dot_exact("fp8_e4m3", [0, 0], "fp8_e4m3", [0])
    with pytest.raises(ValueError, match="unknown output"):
        D.fp_dot_exact("fp8_e4m3", [0], "fp8_e4m3", [0], output="fp16")


# ------------------------------------------------------------------ MX


def mx_ref(fa, a, sa, fb, b, sb, accumulate):
    if sa == 0xFF or sb == 0xFF:
        return math.nan
    scale = Fraction(2) ** (int(sa) + int(sb) - 254)
    if accumulate == "exact":
        s = sum((dec(fa, x) * dec(fb, y) for x, y in zip(a, b)), Fraction(0))
        return fp32_of(s * scale)
    d = D.fp_dot_fp32(fa, a, fb, b)  # checked against the slow loop above
    return fp32_of(Fraction(float(d)) * scale)


@pytest.mark.parametrize("elem", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8"])
@pytest.mark.parametrize("accumulate", ["exact", "fp32"])
def test_mx_block_dot_vs_fraction(elem, accumulate):
    rng = np.random.default_rng(21)
    name = M.MX_FORMATS[elem]
    a = random_finite(name, rng, (12, 32))
    b = random_finite(name, rng, (12, 32))
    sa = rng.integers(0, 255, 12)
    sb = rng.integers(0, 255, 12)
    sa[:3] = [127, 1, 250]
    sb[:3] = [127, 2, 250]  # unit scales, deep underflow, overflow
    sa[3] = 0xFF
    got = M.mx_block_dot(elem, a, sa, b, sb, accumulate=accumulate)
    assert got.dtype == np.float32 and got.shape == (12,)
    for r in range(12):
        want = mx_ref(name, a[r], sa[r], name, b[r], sb[r], accumulate)
        assert (np.isnan(got[r]) if np.isnan(want) else got[r] == want), (r, got[r], want)
    assert np.isnan(got[3])
    scalar = M.mx_block_dot(name, a[0], 127, b[0], 127, accumulate=accumulate)
    assert scalar == got[0] and np.ndim(scalar) == 0


def test_mx_exact_output_and_mixed_elements():
    rng = np.random.default_rng(22)
    a = random_finite("fp8_e4m3", rng, 32)
    b = random_finite("fp4_e2m1", rng, 32)
    got = M.mx_block_dot(("mxfp8_e4m3", "mxfp4"), a, 130, b, 120, output="exact")
    ref = sum((dec("fp8_e4m3", x) * dec("fp4_e2m1", y) for x, y in zip(a, b)), Fraction(0))
    assert got == ref * Fraction(2) ** (130 + 120 - 254)


def test_mxint8_semantics():
    a = np.full(32, 0x40)  # 1.0 each (64 * 2^-6)
    b = np.zeros(32, dtype=np.int64)
    b[0], b[1] = 0x80, 0x7F  # -2 and 127/64
    assert M.mx_block_dot("mxint8", a, 127, b, 128) == (-2 + 127 / 64) * 2


def test_mx_specials():
    e5 = "mxfp8_e5m2"
    a = np.full(32, 0x3C)
    b = np.zeros(32, dtype=np.int64)
    a[5] = 0x7C  # inf * 0 -> NaN
    assert np.isnan(M.mx_block_dot(e5, a, 127, b, 127))
    b[:] = 0x3C
    assert M.mx_block_dot(e5, a, 100, b, 100) == np.inf  # inf element, tiny scales: still inf
    assert np.isnan(M.mx_block_dot(e5, np.full(32, 0x3C), 0xFF, b, 127, accumulate="fp32"))
    assert np.isnan(M.mx_block_dot(e5, np.zeros(32, int), 127, np.zeros(32, int), 0xFF))
    assert M.mx_block_dot(e5, np.zeros(32, int), 0, np.zeros(32, int), 0) == 0


def test_mx_errors():
    z16 = np.zeros(16, dtype=np.int64)
    with pytest.raises(ValueError) as err:
        M.mx_block_dot("mxfp4", z16, 127, z16, 127)
    assert str(err.value) == "block size 16 is not supported; allowed: 32"
    with pytest.raises(ValueError, match="block size 33 is not supported; allowed: 32"):
        M.mx_block_dot("fp8_e4m3", np.zeros(33, int), 127, np.zeros(33, int), 127)
    with pytest.raises(ValueError, match="unknown MX element format 'int8'; allowed: mxfp8_e4m3"):
        M.mx_block_dot("int8", np.zeros(32, int), 127, np.zeros(32, int), 127)
    with pytest.raises(ValueError, match="unknown accumulate"):
        M.mx_block_dot("mxfp4", np.zeros(32, int), 127, np.zeros(32, int), 127, accumulate="fp16")
    with pytest.raises(ValueError, match="out of range for e8m0"):
        M.mx_block_dot("mxfp4", np.zeros(32, int), 256, np.zeros(32, int), 127)


# ------------------------------------------------------------------ integer PEs


def test_int_dot_uses_gemm_semantics():
    rng = np.random.default_rng(5)
    for policy in ("wrap", "saturate"):
        for _ in range(50):
            k = int(rng.integers(1, 40))
            a = rng.integers(-128, 128, k)
            b = rng.integers(-128, 128, k)
            got, ovf = D.int_dot(a, b, 16, policy)
            exact = int(np.dot(a, b))
            ref_c, ref_ovf = gemm_int(a[None], b[:, None], k, 16, policy)
            assert (got, ovf) == (int(ref_c[0, 0]), ref_ovf)
            assert ovf == (not -(2**15) <= exact < 2**15)
            if policy == "saturate":
                assert got == min(max(exact, -(2**15)), 2**15 - 1)
            else:
                assert got == (exact + 2**15) % 2**16 - 2**15


def slow_lanes(byte, width, signed):
    out = []
    for i in range(8 // width):
        v = (byte >> (width * i)) & ((1 << width) - 1)
        if signed and v >= 1 << (width - 1):
            v -= 1 << width
        out.append(v)
    return out


@pytest.mark.parametrize("mode,width", [("int8", 8), ("int4", 4), ("int2", 2)])
@pytest.mark.parametrize("signed", [True, False])
def test_subword_products_exhaustive(mode, width, signed):
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    got = D.subword_products(mode, a, b, signed=signed)
    assert got.shape == (256, 256, 8 // width)
    lanes = np.array([slow_lanes(x, width, signed) for x in range(256)])
    ref = lanes[:, None, :] * lanes[None, :, :]
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(D.subword_dot(mode, a, b, signed=signed), ref.sum(-1))


def test_subword_examples_and_errors():
    assert D.subword_products("int4", 0xF7, 0x21).tolist() == [7 * 1, -1 * 2]
    # lanes low first: a = (0, 1, -2, -1), b = (-1, -2, 1, 1)
    assert D.subword_products("int2", 0b11_10_01_00, 0b01_01_10_11).tolist() == [0, -2, -2, -1]
    assert D.subword_products("int8", 0x80, 0x80).tolist() == [16384]
    with pytest.raises(ValueError, match="unknown mode 'int3'; allowed: int8, int4, int2"):
        D.subword_products("int3", 0, 0)
    with pytest.raises(ValueError, match="byte 256 out of range"):
        D.subword_products("int8", 256, 0)


def test_requantize_rounding():
    x = np.array([5, -5, 7, -7, 6, -6, 0, 1, -1])
    assert D.requantize(x, 1, 1).tolist() == [3, -2, 4, -3, 3, -3, 0, 1, 0]  # half up
    rng = np.random.default_rng(9)
    xs = rng.integers(-(1 << 40), 1 << 40, 2000)
    for mult, shift in [(1, 0), (3, 2), (1518500250, 31), (-77, 5), (1 << 20, 40)]:
        got = D.requantize(xs, mult, shift)
        for x, g in zip(xs.tolist(), got.tolist()):
            assert g == math.floor(Fraction(x * mult, 2**shift) + Fraction(1, 2))
    assert D.requantize([1 << 20, -(1 << 20)], 1 << 10, 0, out_width=8).tolist() == [127, -128]
    assert D.requantize(5, 3, 1) == 8
    with pytest.raises(ValueError, match="does not fit int64"):
        D.requantize([1 << 62], 4, 0)
    with pytest.raises(ValueError, match="shift must be >= 0"):
        D.requantize([1], 1, -1)


def test_mpgemm_group_dot():
    rng = np.random.default_rng(13)
    for w_fmt, a_fmt, g in [("int4", "int8", 8), ("uint4", "int16", 16), ("int2", "int8", 4), ("uint2", "int16", 32)]:
        wf, af = F.get_format(w_fmt), F.get_format(a_fmt)
        k = 64
        w = rng.integers(wf.lo, wf.hi + 1, k)
        a = rng.integers(af.lo, af.hi + 1, k)
        scales = rng.integers(-(1 << 15), 1 << 15, k // g)
        zps = rng.integers(wf.lo, wf.hi + 1, k // g)
        got = D.mpgemm_group_dot(w, a, scales, zps, g, w_fmt=w_fmt, a_fmt=a_fmt)
        ref = sum(int(scales[i // g]) * (int(w[i]) - int(zps[i // g])) * int(a[i]) for i in range(k))
        assert got == ref
    with pytest.raises(ValueError, match="w value 8 outside the int4 range"):
        D.mpgemm_group_dot([8, 0], [1, 1], [1], [0], 2)
    with pytest.raises(ValueError, match="not a multiple of group_size=3"):
        D.mpgemm_group_dot([1, 0], [1, 1], [1], [0], 3)
    with pytest.raises(ValueError, match="unknown w_fmt 'int8'"):
        D.mpgemm_group_dot([1, 0], [1, 1], [1], [0], 2, w_fmt="int8")


# ------------------------------------------------------------------ posit quire


def softposit_quire(n, a, b):
    ctype = sp.posit8_t if n == 8 else sp.posit16_t
    clr, fdp, to_p = (sp.q8Clr, sp.q8_fdp_add, sp.q8_to_p8) if n == 8 else (sp.q16Clr, sp.q16_fdp_add, sp.q16_to_p16)
    q = clr()
    for x, y in zip(a, b):
        px, py = ctype(), ctype()
        px.v, py.v = int(x), int(y)
        q = fdp(q, px, py)
    return to_p(q).v


@pytest.mark.parametrize("name,n", [("posit8_0", 8), ("posit16_1", 16)])
def test_posit_dot_quire_vs_softposit(name, n):
    rng = np.random.default_rng(17)
    codes = np.array([c for c in range(1 << n) if c != 1 << (n - 1)])
    for k in (1, 2, 7, 32, 100):
        a = rng.choice(codes, (30, k))
        b = rng.choice(codes, (30, k))
        got = D.posit_dot_quire(name, a, b)
        for r in range(30):
            assert got[r] == softposit_quire(n, a[r], b[r])
            ref = sum((Fraction(F.decode(name, x).item()) * Fraction(F.decode(name, y).item())
                       for x, y in zip(a[r], b[r])), Fraction(0))
            mant, exp = ref.numerator, -(ref.denominator.bit_length() - 1)
            assert got[r] == P.round_exact(n, 0 if n == 8 else 1, mant, exp)


def test_posit_dot_quire_posit4_and_nar():
    rng = np.random.default_rng(18)
    a = rng.integers(0, 16, (200, 5))
    b = rng.integers(0, 16, (200, 5))
    got = D.posit_dot_quire("posit4_1", a, b)
    from test_golden_posit import slow_decode, slow_round
    for r in range(200):
        va = [slow_decode(4, 1, int(x)) for x in a[r]]
        vb = [slow_decode(4, 1, int(y)) for y in b[r]]
        if any(v is None for v in va + vb):
            assert got[r] == 8
        else:
            assert got[r] == slow_round(4, 1, sum(x * y for x, y in zip(va, vb)))
    assert D.posit_dot_quire("posit8_0", [0x80, 0x40], [0x40, 0x40]) == 0x80
    with pytest.raises(ValueError, match="'fp8_e4m3' is not a posit; allowed: posit4_1, posit8_0, posit16_1"):
        D.posit_dot_quire("fp8_e4m3", [0], [0])
