"""Number formats (golden/formats.py): encodings against ml_dtypes, exact decompositions, products."""

import ml_dtypes
import numpy as np
import pytest

from nmforge.golden import formats as F

FLOATS = ["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "bf16"]
ML = {"fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp8_e5m2": ml_dtypes.float8_e5m2,
      "fp6_e3m2": ml_dtypes.float6_e3m2fn, "fp6_e2m3": ml_dtypes.float6_e2m3fn,
      "fp4_e2m1": ml_dtypes.float4_e2m1fn, "bf16": ml_dtypes.bfloat16,
      "e8m0": ml_dtypes.float8_e8m0fnu}
SMALL = ["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1"]


def all_codes(name):
    return F.get_format(name).codes()


# ------------------------------------------------------------------ registry


def test_registry_names_and_widths():
    widths = {"int2": 2, "int4": 4, "int8": 8, "int16": 16, "uint2": 2, "uint4": 4, "uint8": 8,
              "uint16": 16, "fp8_e4m3": 8, "fp8_e5m2": 8, "fp6_e3m2": 6, "fp6_e2m3": 6,
              "fp4_e2m1": 4, "bf16": 16, "e8m0": 8, "posit8_0": 8, "posit16_1": 16,
              "posit4_1": 4, "mxint8": 8}
    assert set(widths) <= set(F.format_names())
    for name, width in widths.items():
        assert F.get_format(name).width == width
        assert F.get_format(F.get_format(name)) is F.get_format(name)


def test_unknown_format_is_one_line_error():
    with pytest.raises(ValueError) as err:
        F.get_format("fp9_e5m3")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("unknown format 'fp9_e5m3'; allowed: int2, ")
    assert all(n in msg for n in F.format_names())


@pytest.mark.parametrize("name", ["fp8_e4m3", "int4", "bf16", "posit8_0"])
def test_bits_out_of_range(name):
    fmt = F.get_format(name)
    with pytest.raises(ValueError, match=f"code {fmt.num_codes} out of range for {name}"):
        fmt.decode([0, fmt.num_codes])
    with pytest.raises(ValueError, match="out of range"):
        fmt.decode(-1)
    with pytest.raises(TypeError):
        fmt.decode([0.5])


# ------------------------------------------------------------------ float decode / encode


@pytest.mark.parametrize("name", FLOATS + ["e8m0"])
def test_decode_matches_ml_dtypes(name):
    codes = all_codes(name)
    with np.errstate(invalid="ignore"):
        ref = codes.view(ML[name]).astype(np.float64)
    got = F.decode(name, codes)
    np.testing.assert_array_equal(got, ref)  # NaN == NaN here
    assert np.array_equal(np.signbit(got), np.signbit(ref))


def test_special_codes_per_spec():
    def classes(name):
        v = F.decode(name, all_codes(name))
        return set(np.flatnonzero(np.isnan(v))), set(np.flatnonzero(np.isinf(v)))

    assert classes("fp8_e4m3") == ({0x7F, 0xFF}, set())  # S.1111.111, no inf
    assert classes("fp8_e5m2") == ({0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}, {0x7C, 0xFC})
    for name in ("fp6_e3m2", "fp6_e2m3", "fp4_e2m1"):
        assert classes(name) == (set(), set())
    assert classes("e8m0") == ({0xFF}, set())
    nan, inf = classes("bf16")
    assert inf == {0x7F80, 0xFF80} and len(nan) == 2 * 127
    maxes = {"fp8_e4m3": 448, "fp8_e5m2": 57344, "fp6_e3m2": 28, "fp6_e2m3": 7.5, "fp4_e2m1": 6}
    for name, m in maxes.items():
        assert F.get_format(name).max_finite == m
    e8 = F.decode("e8m0", np.arange(255))
    np.testing.assert_array_equal(e8, np.ldexp(1.0, np.arange(255) - 127))


@pytest.mark.parametrize("name", FLOATS + ["e8m0"])
def test_encode_decode_round_trip_every_code(name):
    codes = all_codes(name)
    vals = F.decode(name, codes)
    keep = ~np.isnan(vals)
    got = F.encode(name, vals[keep])
    np.testing.assert_array_equal(got, codes[keep])  # includes -0 and +-inf
    with np.errstate(invalid="ignore", over="ignore"):
        ml_bits = vals[keep].astype(np.float32).astype(ML[name]).view(codes.dtype)
    np.testing.assert_array_equal(got, ml_bits & (F.get_format(name).num_codes - 1))


def reference_encode(name, x):
    """Independent RNE to `name` from the sorted value list (float64 exact comparisons).

    Candidates are the non-negative finite codes plus a virtual code max+1 one ulp above max; the
    nearer neighbour wins, ties go to the even code; landing on the virtual code is an overflow
    (E4M3 -> NaN 0x7F, E5M2/bf16 -> inf, FP6/FP4 -> saturate).
    """
    fmt = F.get_format(name)
    half = fmt.num_codes // 2
    pos = F.decode(name, np.arange(half))
    finite = np.isfinite(pos)
    top = int(np.flatnonzero(finite)[-1])
    vals = np.append(pos[: top + 1], 2 * pos[top] - pos[top - 1])  # virtual next value
    mag = np.abs(x)
    i = np.clip(np.searchsorted(vals, mag, side="right") - 1, 0, len(vals) - 2)
    lo, hi = vals[i], vals[i + 1]
    mid = (lo + hi) / 2
    code = np.where(mag < mid, i, np.where(mag > mid, i + 1, np.where(i % 2 == 0, i, i + 1)))
    code = np.where(mag >= vals[-1], top + 1, code)
    if name == "fp8_e4m3":
        over = 0x7F
    elif name in ("fp8_e5m2", "bf16"):
        over = int(np.flatnonzero(np.isposinf(pos))[0])
    else:
        over = top
    code = np.where(code == top + 1, over, code)
    return (code + np.where(np.signbit(x), half, 0)).astype(np.int64)


def encode_probes(name, rng):
    """Values, midpoints, midpoints +- 1 float64 ulp (double-rounding traps), random, extremes."""
    fmt = F.get_format(name)
    v = F.decode(name, fmt.codes())
    v = np.unique(v[np.isfinite(v)])
    mids = (v[1:] + v[:-1]) / 2
    big = 2 * v[-1]
    probes = [v, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
              np.array([v[-1] * 1.03125, v[-1] * 1.0625, v[-1] * 1.07, big, 1e300]),
              np.ldexp(rng.random(4000) + 0.5, rng.integers(-140, 130, 4000)),
              rng.uniform(-v[-1] * 1.2, v[-1] * 1.2, 4000)]
    x = np.concatenate(probes)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("name", FLOATS)
def test_encode_is_single_rne(name):
    x = encode_probes(name, np.random.default_rng(7))
    np.testing.assert_array_equal(F.encode(name, x).astype(np.int64), reference_encode(name, x))


@pytest.mark.parametrize("name", FLOATS + ["e8m0"])
def test_encode_float32_equals_ml_dtypes_cast(name):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 1 << 32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    fmt = F.get_format(name)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = x.astype(ML[name]).view(np.uint16 if fmt.width > 8 else np.uint8) & (fmt.num_codes - 1)
    got = F.encode(name, x)
    keep = ~np.isnan(x)
    np.testing.assert_array_equal(got[keep], ref[keep])


def test_encode_float64_rounds_once():
    # 1 + 2^-4 + 2^-40 lies just above the E4M3 midpoint of 1 and 1.125: single RNE gives 1.125.
    # (ml_dtypes 0.6.0's float64 astype goes through float32 first and returns 1.0.)
    assert F.decode("fp8_e4m3", F.encode("fp8_e4m3", 1 + 2**-4 + 2**-40)) == 1.125
    assert F.decode("bf16", F.encode("bf16", 1 + 2**-8 + 2**-40)) == 1 + 2**-7
    assert F.decode("fp4_e2m1", F.encode("fp4_e2m1", 2.5 + 2**-45)) == 3.0
    assert F.decode("fp4_e2m1", F.encode("fp4_e2m1", 2.5)) == 2.0  # tie to even
    assert F.encode("fp8_e4m3", 2.0**-10).item() == 0x00  # tie between 0 and 2^-9: even code 0
    assert F.encode("fp8_e4m3", 2.0**-10 + 2.0**-40).item() == 0x01
    assert F.encode("fp8_e4m3", -1e-300).item() == 0x80


def test_overflow_and_nan_encodings():
    e4 = lambda x: int(F.encode("fp8_e4m3", x))
    assert e4(464.0) == 0x7E and e4(463.99) == 0x7E  # 464 ties to 448 (even mantissa 110)
    assert e4(464.0001) == 0x7F and e4(np.inf) == 0x7F and e4(-np.inf) == 0xFF  # NaN, no inf
    e5 = lambda x: int(F.encode("fp8_e5m2", x))
    assert e5(61439.9) == 0x7B and e5(61440.0) == 0x7C and e5(-1e9) == 0xFC
    assert np.isnan(F.decode("fp8_e5m2", e5(np.nan)))
    for name in ("fp6_e3m2", "fp6_e2m3", "fp4_e2m1"):
        fmt = F.get_format(name)
        assert F.decode(name, F.encode(name, [np.inf, -1e30])).tolist() == [fmt.max_finite, -fmt.max_finite]
        assert F.decode(name, F.encode(name, np.nan)) == 0.0  # no NaN: ml_dtypes gives a zero
    assert F.decode("bf16", F.encode("bf16", 3.5e38)) == np.inf


def test_e8m0_encode_semantics():
    enc = lambda x: F.encode("e8m0", np.asarray(x, dtype=np.float64)).tolist()
    assert enc([1.0, 2.0, 0.5, 2.0**-127, 2.0**127]) == [127, 128, 126, 0, 254]
    # nearest power of two, ties (1.5 * 2^k) upward, not to the even code
    assert enc([0.75, 1.5, 3.0, 6.0, 1.49, 1.51]) == [127, 128, 129, 130, 127, 128]
    assert enc([0.0, -1.0, np.inf, np.nan, 2.0**128]) == [0xFF] * 5


# ------------------------------------------------------------------ integers


@pytest.mark.parametrize("name", ["int2", "int4", "int8", "int16", "uint2", "uint4", "uint8", "uint16"])
def test_integer_formats(name):
    fmt = F.get_format(name)
    codes = fmt.codes()
    vals = fmt.decode(codes)
    lo, hi = (-(1 << (fmt.width - 1)), (1 << (fmt.width - 1)) - 1) if fmt.signed else (0, fmt.num_codes - 1)
    assert vals.min() == lo and vals.max() == hi and len(np.unique(vals)) == fmt.num_codes
    np.testing.assert_array_equal(fmt.encode(vals.astype(np.int64)), codes)
    np.testing.assert_array_equal(fmt.encode(vals), codes)
    if fmt.width in (2, 4):  # ml_dtypes defines int2/int4/uint2/uint4
        ml = getattr(ml_dtypes, name)
        np.testing.assert_array_equal(vals, codes.astype(np.uint8).view(ml).astype(np.float64))
    with pytest.raises(ValueError, match=f"outside the {name} range"):
        fmt.encode([hi + 1])
    with pytest.raises(ValueError, match="must be integers"):
        fmt.encode([0.5])


def test_mxint8():
    codes = all_codes("mxint8")
    vals = F.decode("mxint8", codes)
    assert vals[0x40] == 1.0 and vals[0x7F] == 127 / 64 and vals[0x80] == -2.0 and vals[0xFF] == -1 / 64
    np.testing.assert_array_equal(F.encode("mxint8", vals), codes)
    assert F.encode("mxint8", [5.0, -5.0, 1 / 128, 3 / 128]).tolist() == [0x7F, 0x80, 0x00, 0x02]


# ------------------------------------------------------------------ exact decomposition and products


@pytest.mark.parametrize("name", F.format_names())
def test_exact_value_reconstructs_decode(name):
    fmt = F.get_format(name)
    codes = fmt.codes()
    mant, exp, special = F.exact_value(name, codes)
    vals = fmt.decode(codes)
    fin = special == F.FINITE
    assert np.array_equal(fin, np.isfinite(vals))
    np.testing.assert_array_equal(np.ldexp(mant[fin].astype(np.float64), exp[fin]), vals[fin])
    assert np.all(np.abs(mant) < 2 ** fmt.sig_bits)
    assert exp[fin].min() >= fmt.lsb_exp and exp[fin].max() <= fmt.max_exp
    assert np.all(special[np.isnan(vals)] == F.NAN)
    assert np.all(special[np.isposinf(vals)] == F.POS_INF)
    assert np.all(special[np.isneginf(vals)] == F.NEG_INF)


def test_float_exact_value_is_the_bit_fields():
    # E4M3 0x3A = 0.0111.010 -> (8 + 2) * 2^(7 - 7 - 3); subnormal 0x83 = -3 * 2^-9
    m, e, s = F.exact_value("fp8_e4m3", [0x3A, 0x83, 0x00, 0x7F])
    assert m.tolist() == [10, -3, 0, 0] and e.tolist() == [-3, -9, -9, -9]
    assert s.tolist() == [F.FINITE, F.FINITE, F.FINITE, F.NAN]
    m, e, s = F.exact_value("e8m0", [0, 127, 254, 255])
    assert m.tolist() == [1, 1, 1, 0] and e.tolist() == [-127, 0, 127, -127] and s[-1] == F.NAN


def check_all_pairs(name_a, name_b):
    ca, cb = all_codes(name_a), all_codes(name_b)
    a, b = np.meshgrid(ca, cb, indexing="ij")
    a, b = a.ravel(), b.ravel()
    mant, exp, special = F.exact_product(name_a, a, name_b, b)
    with np.errstate(invalid="ignore"):
        ref = F.decode(name_a, a) * F.decode(name_b, b)  # exact in float64 for these formats
    fin = special == F.FINITE
    assert np.array_equal(fin, np.isfinite(ref))
    np.testing.assert_array_equal(np.ldexp(mant[fin].astype(np.float64), exp[fin]), ref[fin])
    assert np.array_equal(special == F.NAN, np.isnan(ref))
    assert np.array_equal(special == F.POS_INF, np.isposinf(ref))
    assert np.array_equal(special == F.NEG_INF, np.isneginf(ref))
    assert np.all(mant[~fin] == 0)
    return ref


@pytest.mark.parametrize("name_a,name_b", [("fp8_e4m3", "fp8_e4m3"), ("fp8_e5m2", "fp8_e5m2"),
                                           ("fp8_e4m3", "fp8_e5m2"), ("fp6_e3m2", "fp6_e3m2"),
                                           ("fp6_e2m3", "fp6_e2m3"), ("fp6_e3m2", "fp6_e2m3"),
                                           ("fp4_e2m1", "fp4_e2m1"), ("mxint8", "mxint8"),
                                           ("fp4_e2m1", "fp8_e4m3"), ("posit8_0", "posit8_0")])
def test_every_product_exact(name_a, name_b):
    ref = check_all_pairs(name_a, name_b)
    if name_a != "posit8_0":
        # ...and every such product is exact in FP32 too
        fin = np.isfinite(ref)
        np.testing.assert_array_equal(ref[fin].astype(np.float32).astype(np.float64), ref[fin])


def test_e5m2_product_specials():
    inf, ninf, zero, nzero, one, nan = 0x7C, 0xFC, 0x00, 0x80, 0x3C, 0x7E
    a = [inf, inf, ninf, inf, one, nan, inf, ninf]
    b = [zero, nzero, one, ninf, nan, one, one | 0x80, ninf]
    _, _, s = F.exact_product("fp8_e5m2", a, "fp8_e5m2", b)
    assert s.tolist() == [F.NAN, F.NAN, F.NEG_INF, F.NEG_INF, F.NAN, F.NAN, F.NEG_INF, F.POS_INF]


def test_bf16_products_can_round_in_fp32():
    tiny, big = 0x0001, 0x7F7F  # smallest subnormal 2^-133, largest finite
    mant, exp, _ = F.exact_product("bf16", [tiny, big, 0x3F81], "bf16", [tiny, big, 0x3F81])
    exact = [int(m) * 2.0 ** int(e) for m, e in zip(mant, exp)]
    assert exact[0] == 2.0**-266 and np.float32(exact[0]) == 0  # underflows FP32
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(exact[1]))
    assert np.float32(exact[2]) == exact[2]  # (1 + 2^-7)^2 has 15 bits: exact
