import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmforge.golden.gemm import gemm_int, sparse_gemm_int
from nmforge.golden.ints import random_ints
from nmforge.golden.nm import MetadataError, compress_nm, decompress_nm, random_nm_weights

PATTERNS = [(1, 2), (1, 4), (2, 4), (1, 8), (2, 8), (4, 8), (1, 16), (2, 16), (4, 16), (8, 16),
            (2, 2), (4, 4), (8, 8), (16, 16)]
POLICIES = ["wrap", "saturate"]


def slow_gemm(a, w, m, acc_width, overflow):
    """Independent pure-Python model: per output, fold exact group sums in ascending group order."""
    lo, hi = -(2 ** (acc_width - 1)), 2 ** (acc_width - 1) - 1
    a, w = a.tolist(), w.tolist()
    k, cols = len(w), len(w[0])
    c, flag = [], False
    for row in a:
        out = []
        for col in range(cols):
            acc = 0
            for g in range(k // m):
                exact = acc + sum(row[g * m + i] * w[g * m + i][col] for i in range(m))
                flag |= not lo <= exact <= hi
                acc = (exact - lo) % 2**acc_width + lo if overflow == "wrap" else min(max(exact, lo), hi)
            out.append(acc)
        c.append(out)
    return c, flag


@st.composite
def gemm_cases(draw):
    n, m = draw(st.sampled_from(PATTERNS))
    rows, groups, cols = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    a_width, w_width = draw(st.sampled_from([2, 4, 8, 16])), draw(st.sampled_from([2, 4, 8, 16]))
    acc_width = draw(st.sampled_from([4, 8, 12, 16, 20, 24, 32, 48]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = random_ints(rng, (rows, groups * m), a_width)
    w = random_nm_weights(rng, groups * m, cols, n, m, w_width)
    return a, w, n, m, acc_width


@settings(max_examples=150, deadline=None)
@given(gemm_cases(), st.sampled_from(POLICIES))
def test_sparse_matches_dense_and_slow_reference(case, overflow):
    a, w, n, m, acc_width = case
    values, indices = compress_nm(w, n, m)
    c_sparse, flag_sparse = sparse_gemm_int(a, values, indices, n, m, acc_width, overflow)
    c_dense, flag_dense = gemm_int(a, decompress_nm(values, indices, n, m), m, acc_width, overflow)
    assert c_sparse.dtype == c_dense.dtype == np.int64
    assert c_sparse.shape == (a.shape[0], w.shape[1])
    np.testing.assert_array_equal(c_sparse, c_dense)
    assert flag_sparse is flag_dense
    c_ref, flag_ref = slow_gemm(a, w, m, acc_width, overflow)
    assert c_dense.tolist() == c_ref
    assert flag_dense is flag_ref


@settings(max_examples=100, deadline=None)
@given(gemm_cases())
def test_wrap_is_exact_product_mod_2_pow_acc_width(case):
    a, w, n, m, acc_width = case
    exact = a.astype(object) @ w.astype(object)
    half, full = 2 ** (acc_width - 1), 2**acc_width
    expected = [[(x + half) % full - half for x in row] for row in exact.tolist()]
    c, _ = sparse_gemm_int(a, *compress_nm(w, n, m), n, m, acc_width, "wrap")
    assert c.tolist() == expected


@settings(max_examples=50, deadline=None)
@given(gemm_cases(), st.sampled_from(POLICIES))
def test_wide_accumulator_never_overflows(case, overflow):
    a, w, n, m, _ = case  # |sum| <= 64 * 2**30 < 2**47
    c, flag = gemm_int(a, w, m, 48, overflow)
    assert flag is False
    assert c.tolist() == (a.astype(object) @ w.astype(object)).tolist()


def gemm(*args):
    c, flag = gemm_int(*args)
    return c.tolist(), flag


def sparse(*args):
    c, flag = sparse_gemm_int(*args)
    return c.tolist(), flag


def column(*values):
    return np.array(values, dtype=np.int64)[:, None]


def test_saturate_order_matters_hand_case():
    a = np.ones((1, 6), dtype=np.int64)
    w = column(30000, 10000, -30000, -10000, 0, 5)  # group sums 40000, -40000, 5
    # saturate: 40000 -> 32767 (overflow); 32767 - 40000 = -7233; -7233 + 5 = -7228
    assert gemm(a, w, 2, 16, "saturate") == ([[-7228]], True)
    # wrap: 40000 -> -25536; -25536 - 40000 = -65536 -> 0; 0 + 5 = 5 (the exact total), still flagged
    assert gemm(a, w, 2, 16, "wrap") == ([[5]], True)
    # reversed group order: -40000 -> -32768; -32768 + 40000 = 7232; 7232 + 5 = 7237
    w_rev = column(-30000, -10000, 30000, 10000, 0, 5)
    assert gemm(a, w_rev, 2, 16, "saturate") == ([[7237]], True)
    values, indices = compress_nm(w, 2, 2)
    assert sparse(a, values, indices, 2, 2, 16, "saturate") == ([[-7228]], True)


def test_group_sum_is_exact_before_the_policy():
    a = np.ones((1, 2), dtype=np.int64)
    w = column(40000, -40000)
    for overflow in POLICIES:
        assert gemm(a, w, 2, 16, overflow) == ([[0]], False)  # one group: exact sum 0
    # Grouped per product instead, the first update overflows.
    assert gemm(a, w, 1, 16, "saturate") == ([[-7233]], True)
    assert gemm(a, w, 1, 16, "wrap") == ([[0]], True)


@pytest.mark.parametrize(
    "value, flag, saturated, wrapped",
    [(32767, False, 32767, 32767), (32768, True, 32767, -32768),
     (-32768, False, -32768, -32768), (-32769, True, -32768, 32767)],
)
def test_overflow_boundary(value, flag, saturated, wrapped):
    a = np.ones((1, 1), dtype=np.int64)
    assert gemm(a, column(value), 1, 16, "saturate") == ([[saturated]], flag)
    assert gemm(a, column(value), 1, 16, "wrap") == ([[wrapped]], flag)


def test_sparse_hand_case():
    a = np.array([[10, 20, 30, 40, 1, 2, 3, 4]])
    values = np.array([[2], [-3], [5], [7]], dtype=np.int8)
    indices = np.array([[1], [3], [0], [2]], dtype=np.uint8)
    # 20*2 + 40*(-3) = -80, then + 1*5 + 3*7 = 26 -> -54
    assert sparse(a, values, indices, 2, 4, 8, "wrap") == ([[-54]], False)
    # acc_width 7 (range -64..63): -80 -> saturate -64, then -64 + 26 = -38
    assert sparse(a, values, indices, 2, 4, 7, "saturate") == ([[-38]], True)


@pytest.mark.parametrize("overflow", POLICIES)
def test_sparse_rejects_malformed_metadata(overflow):
    rng = np.random.default_rng(7)
    w = random_nm_weights(rng, 16, 3, 2, 4, 8)
    values, indices = compress_nm(w, 2, 4)
    indices[5, 2] = 4  # group 2, column 2
    with pytest.raises(MetadataError, match=re.escape("group (2, 2): index 4 >= M=4")):
        sparse_gemm_int(random_ints(rng, (2, 16), 8), values, indices, 2, 4, 32, overflow)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(overflow="clamp"), ValueError, "overflow"),
        (dict(acc_width=0), ValueError, "acc_width"),
        (dict(acc_width=49), ValueError, "acc_width"),
        (dict(a=np.ones((1, 8)), ), TypeError, "integer"),
        (dict(a=np.ones((1, 4), dtype=np.int64)), ValueError, "shape"),
        (dict(a=np.ones((1, 6), dtype=np.int64), w=np.ones((6, 1), dtype=np.int64)), ValueError, r"K=6.*M=4"),
        (dict(a=np.full((1, 8), 2**40), w=np.full((8, 1), 2**40)), ValueError, "too large"),
    ],
)
def test_gemm_argument_errors(kwargs, error, match):
    args = dict(a=np.ones((1, 8), dtype=np.int64), w=np.ones((8, 1), dtype=np.int64), m=4, acc_width=16,
                overflow="wrap")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        gemm_int(**args)


def test_sparse_argument_errors():
    values, indices = compress_nm(np.ones((8, 1), dtype=np.int64), 4, 4)
    with pytest.raises(ValueError, match="shape"):
        sparse_gemm_int(np.ones((1, 4), dtype=np.int64), values, indices, 4, 4, 16, "wrap")
    with pytest.raises(ValueError, match="overflow"):
        sparse_gemm_int(np.ones((1, 8), dtype=np.int64), values, indices, 4, 4, 16, "clip")
    with pytest.raises(ValueError, match="shape"):
        sparse_gemm_int(np.ones((1, 8), dtype=np.int64), values[:4], indices, 4, 4, 16, "wrap")


def test_saturation_applies_to_each_beat_sum_not_each_product():
    """The documented policy (README, golden.gemm): products and a beat's sum of them are exact;
    wrap / saturate and the overflow flag apply when a beat's sum is added. Beat 2's products
    (+100, -100) would push a per-product accumulator past 127 (to 127, then 27); per beat it
    adds 0 and stays at 100 without overflow. Per tile, (100 + 100 - 100) would not overflow,
    but per beat the second GEMM does: 100 + 100 -> 127 (saturate; then 27) or -56 (wrap; then
    back to 100), with the flag either way."""
    c, overflowed = gemm_int(np.ones((1, 4), dtype=np.int64), np.array([[100], [0], [100], [-100]]),
                             2, 8, "saturate")
    assert c.tolist() == [[100]] and not overflowed
    w = np.array([[100], [0], [100], [0], [-100], [0]])
    a6 = np.ones((1, 6), dtype=np.int64)
    c, overflowed = gemm_int(a6, w, 2, 8, "saturate")
    assert c.tolist() == [[27]] and overflowed
    c, overflowed = gemm_int(a6, w, 2, 8, "wrap")
    assert c.tolist() == [[100]] and overflowed
