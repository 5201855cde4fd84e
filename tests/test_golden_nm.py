import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmforge.golden.nm import (
    MetadataError,
    bitmap_to_indices,
    check_pattern,
    compress_nm,
    decompress_nm,
    indices_to_bitmap,
    malformed_bitmap_groups,
    malformed_groups,
    prune_nm,
    random_nm_weights,
    validate_indices,
)

# SPEC section 1: the sparse patterns plus dense (N == M) for every M.
PATTERNS = [(1, 2), (1, 4), (2, 4), (1, 8), (2, 8), (4, 8), (1, 16), (2, 16), (4, 16), (8, 16),
            (2, 2), (4, 4), (8, 8), (16, 16)]
DTYPES = [np.int8, np.int16, np.int32, np.int64]


@st.composite
def weight_cases(draw):
    """(w, n, m): a random integer matrix, either full range or drawn from a tie-heavy value set."""
    n, m = draw(st.sampled_from(PATTERNS))
    groups, cols = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    if draw(st.booleans()):
        w = rng.integers(lo, hi, size=(groups * m, cols), endpoint=True, dtype=dtype)
    else:
        w = rng.choice(np.array([lo, lo + 1, -2, -1, 0, 0, 0, 1, 2, hi], dtype=dtype), size=(groups * m, cols))
    return w, n, m


def group_values(w, g, col, m):
    return [int(v) for v in w[g * m:(g + 1) * m, col]]


def prune_reference(w, n, m):
    out = np.zeros_like(w)
    for g in range(w.shape[0] // m):
        for col in range(w.shape[1]):
            vals = group_values(w, g, col, m)
            for i in sorted(range(m), key=lambda i: (-abs(vals[i]), i))[:n]:
                out[g * m + i, col] = w[g * m + i, col]
    return out


def compress_reference(w, n, m):
    values = np.zeros((w.shape[0] // m * n, w.shape[1]), dtype=w.dtype)
    indices = np.zeros(values.shape, dtype=np.int64)
    for g in range(w.shape[0] // m):
        for col in range(w.shape[1]):
            vals = group_values(w, g, col, m)
            nonzero = [i for i in range(m) if vals[i] != 0]
            padding = [i for i in range(m) if vals[i] == 0][: n - len(nonzero)]
            kept = sorted(nonzero + padding)
            indices[g * n:(g + 1) * n, col] = kept
            values[g * n:(g + 1) * n, col] = [vals[i] for i in kept]
    return values, indices


def valid_metadata(seed, n, m, groups=4, cols=3):
    rng = np.random.default_rng(seed)
    w = random_nm_weights(rng, groups * m, cols, n, m, 8)
    return rng, w, *compress_nm(w, n, m)


# --- patterns ---------------------------------------------------------------------------------

@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_all_patterns_accepted(m):
    for n in range(1, m + 1):
        assert check_pattern(n, m) == (n, m)


@pytest.mark.parametrize("n, m", [(0, 4), (5, 4), (-1, 2), (1, 3), (2, 32), (1, 1), (4, 0)])
def test_bad_patterns_rejected(n, m):
    with pytest.raises(ValueError, match=f"N={n}|M={m}"):
        check_pattern(n, m)
    with pytest.raises(ValueError):
        prune_nm(np.zeros((16, 1), dtype=np.int8), n, m)


@pytest.mark.parametrize("fn", [prune_nm, compress_nm])
def test_k_not_multiple_of_m(fn):
    with pytest.raises(ValueError, match=r"K=6.*M=4"):
        fn(np.zeros((6, 2), dtype=np.int8), 2, 4)


# --- pruning ----------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(weight_cases())
def test_prune_matches_slow_reference(case):
    w, n, m = case
    pruned = prune_nm(w, n, m)
    assert pruned.dtype == w.dtype and pruned.shape == w.shape
    np.testing.assert_array_equal(pruned, prune_reference(w, n, m))
    # At most N non-zeros per group, every survivor is the original value, pruning is idempotent.
    assert ((pruned.reshape(-1, m, w.shape[1]) != 0).sum(axis=1) <= n).all()
    assert ((pruned == w) | (pruned == 0)).all()
    np.testing.assert_array_equal(prune_nm(pruned, n, m), pruned)


def test_prune_ties_go_to_lower_index():
    w = np.array([[3, -3, 3, 1], [5, -5, 5, -5], [0, 2, -2, 2]], dtype=np.int16).T
    np.testing.assert_array_equal(prune_nm(w, 2, 4)[:, 0], [3, -3, 0, 0])
    np.testing.assert_array_equal(prune_nm(w, 1, 4)[:, 1], [5, 0, 0, 0])
    np.testing.assert_array_equal(prune_nm(w, 2, 4)[:, 2], [0, 2, -2, 0])


def test_prune_keeps_most_negative_int8():
    np.testing.assert_array_equal(prune_nm(np.array([[127], [-128]], dtype=np.int8), 1, 2), [[0], [-128]])
    np.testing.assert_array_equal(prune_nm(np.array([[-128], [127]], dtype=np.int8), 1, 2), [[-128], [0]])
    w = np.array([[127, -127, -128, 127]], dtype=np.int8).T
    np.testing.assert_array_equal(prune_nm(w, 2, 4).ravel(), [127, 0, -128, 0])
    w64 = np.array([[2**63 - 1], [-(2**63)]], dtype=np.int64)
    np.testing.assert_array_equal(prune_nm(w64, 1, 2), [[0], [-(2**63)]])


# --- compression ------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(weight_cases())
def test_compress_round_trip_and_layout(case):
    w, n, m = case
    pruned = prune_nm(w, n, m)
    values, indices = compress_nm(pruned, n, m)
    k, cols = w.shape
    assert values.shape == indices.shape == (k // m * n, cols)
    assert values.dtype == w.dtype and indices.dtype == np.uint8
    ref_values, ref_indices = compress_reference(pruned, n, m)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(values, ref_values)
    assert not malformed_groups(indices, n, m).any()
    np.testing.assert_array_equal(decompress_nm(values, indices, n, m), pruned)


def test_compress_padding_hand_cases():
    w = np.array([[0, 0, 7, 0], [0, 0, 0, 0], [0, 5, 0, 0], [9, 0, 0, 0], [0, 0, 0, 4]], dtype=np.int8).T
    values, indices = compress_nm(w, 2, 4)
    np.testing.assert_array_equal(indices.T, [[0, 2], [0, 1], [0, 1], [0, 1], [0, 3]])
    np.testing.assert_array_equal(values.T, [[0, 7], [0, 0], [0, 5], [9, 0], [0, 4]])
    w8 = np.array([[0, 0, 0, 0, 0, -3, 0, 6]], dtype=np.int16).T
    values, indices = compress_nm(w8, 4, 8)
    assert indices.ravel().tolist() == [0, 1, 5, 7]
    assert values.ravel().tolist() == [0, 0, -3, 6]


def test_dense_compression_is_identity_layout():
    w = np.arange(1, 33, dtype=np.int64).reshape(16, 2)
    values, indices = compress_nm(w, 16, 16)
    np.testing.assert_array_equal(values, w)
    assert (indices[:, 0] == np.arange(16)).all() and (indices[:, 1] == np.arange(16)).all()


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([p for p in PATTERNS if p[0] < p[1]]), st.integers(0, 2**32 - 1))
def test_compress_rejects_too_many_nonzeros(pattern, seed):
    n, m = pattern
    rng, w, _, _ = valid_metadata(seed, n, m)
    g, col = int(rng.integers(4)), int(rng.integers(3))
    w[g * m:(g + 1) * m, col] = 0
    w[g * m:g * m + n + 1, col] = 1
    with pytest.raises(ValueError, match=re.escape(f"group ({g}, {col}): {n + 1} non-zeros > N={n}")):
        compress_nm(w, n, m)


# --- malformed index metadata -----------------------------------------------------------------

def corrupt_group(indices, n, m, g, col, kind, rng):
    """Corrupt group (g, col) in place; return the expected fragment of the error message."""
    column = indices[g * n:(g + 1) * n, col]
    if kind == "range":
        value = int(rng.integers(m, 256))
        column[rng.integers(n)] = value
        return f"index {value} >= M={m}"
    j = int(rng.integers(n - 1))
    if kind == "swap":
        column[j], column[j + 1] = column[j + 1], column[j]
    else:  # duplicate
        column[j + 1] = column[j]
    return "indices not strictly increasing"


def corruption_kinds(n):
    return ["range", "swap", "duplicate"] if n >= 2 else ["range"]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(PATTERNS), st.integers(0, 2**32 - 1), st.data())
def test_malformed_index_group_is_named(pattern, seed, data):
    n, m = pattern
    rng, _, values, indices = valid_metadata(seed, n, m)
    g, col = int(rng.integers(4)), int(rng.integers(3))
    kind = data.draw(st.sampled_from(corruption_kinds(n)))
    problem = corrupt_group(indices, n, m, g, col, kind, rng)
    expected = np.zeros((4, 3), dtype=bool)
    expected[g, col] = True
    np.testing.assert_array_equal(malformed_groups(indices, n, m), expected)
    for fn in (lambda: validate_indices(indices, n, m), lambda: decompress_nm(values, indices, n, m),
               lambda: indices_to_bitmap(indices, n, m)):
        with pytest.raises(MetadataError, match=re.escape(f"group ({g}, {col}): {problem}")) as info:
            fn()
        assert (info.value.group, info.value.col) == (g, col)
        assert isinstance(info.value, ValueError)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PATTERNS), st.integers(0, 2**32 - 1))
def test_malformed_groups_counts_exactly_the_corrupted(pattern, seed):
    n, m = pattern
    rng, _, _, indices = valid_metadata(seed, n, m, groups=6, cols=5)
    chosen = rng.random((6, 5)) < 0.3
    for g, col in zip(*np.nonzero(chosen)):
        corrupt_group(indices, n, m, g, col, rng.choice(corruption_kinds(n)), rng)
    bad = malformed_groups(indices, n, m)
    np.testing.assert_array_equal(bad, chosen)
    assert bad.sum() == chosen.sum()
    if chosen.any():
        first = min(zip(*np.nonzero(chosen)))
        with pytest.raises(MetadataError, match=re.escape(f"group ({first[0]}, {first[1]}):")):
            validate_indices(indices, n, m)
    else:
        validate_indices(indices, n, m)


def test_negative_index_rejected():
    indices = np.array([[0], [1], [-1], [3]], dtype=np.int64)
    with pytest.raises(MetadataError, match=re.escape("group (1, 0): index -1 < 0")):
        validate_indices(indices, 2, 4)


# --- bitmap metadata --------------------------------------------------------------------------

def test_bitmap_hand_cases():
    indices = np.array([[0, 1], [2, 3], [1, 0], [3, 2]], dtype=np.uint8)  # groups [0,2]/[1,3], [1,3]/[0,2]
    bitmap = indices_to_bitmap(indices, 2, 4)
    assert bitmap.dtype == np.uint16
    np.testing.assert_array_equal(bitmap, [[0b0101, 0b1010], [0b1010, 0b0101]])
    dense = indices_to_bitmap(np.arange(16, dtype=np.uint8)[:, None], 16, 16)
    assert dense.tolist() == [[0xFFFF]]


@settings(max_examples=100, deadline=None)
@given(weight_cases())
def test_bitmap_round_trip(case):
    w, n, m = case
    _, indices = compress_nm(prune_nm(w, n, m), n, m)
    bitmap = indices_to_bitmap(indices, n, m)
    assert bitmap.shape == (w.shape[0] // m, w.shape[1])
    for g in range(bitmap.shape[0]):
        for col in range(bitmap.shape[1]):
            assert int(bitmap[g, col]) == sum(1 << int(i) for i in indices[g * n:(g + 1) * n, col])
    back = bitmap_to_indices(bitmap, n, m)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, indices)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(PATTERNS), st.integers(0, 2**32 - 1))
def test_malformed_bitmap_group_is_named(pattern, seed):
    n, m = pattern
    rng, _, _, indices = valid_metadata(seed, n, m, groups=5, cols=4)
    bitmap = indices_to_bitmap(indices, n, m)
    chosen = rng.random((5, 4)) < 0.3
    g, col = int(rng.integers(5)), int(rng.integers(4))
    chosen[g, col] = True
    for gg, cc in zip(*np.nonzero(chosen)):
        bitmap[gg, cc] ^= np.uint16(1 << int(rng.integers(m)))
    np.testing.assert_array_equal(malformed_bitmap_groups(bitmap, n, m), chosen)
    first = min(zip(*np.nonzero(chosen)))
    word = int(bitmap[first])
    popcount = bin(word).count("1")
    assert popcount in (n - 1, n + 1)
    with pytest.raises(MetadataError, match=re.escape(f"group ({first[0]}, {first[1]}): bitmap popcount {popcount} != N={n}")):
        bitmap_to_indices(bitmap, n, m)


@pytest.mark.parametrize("n, m", [(1, 2), (2, 4), (4, 8)])
def test_bitmap_bits_above_m_rejected(n, m):
    bitmap = np.array([[(1 << n) - 1, ((1 << n) - 1) | (1 << m)]], dtype=np.uint16)  # second word popcount n+1
    bitmap[0, 1] ^= 1  # popcount n again, but with a bit at position M
    np.testing.assert_array_equal(malformed_bitmap_groups(bitmap, n, m), [[False, True]])
    with pytest.raises(MetadataError, match=re.escape("group (0, 1): bitmap") + ".*outside 0..M-1"):
        bitmap_to_indices(bitmap, n, m)


# --- random weights ---------------------------------------------------------------------------

@pytest.mark.parametrize("n, m", PATTERNS)
def test_random_nm_weights(n, m):
    rng = np.random.default_rng(n * 100 + m)
    w = random_nm_weights(rng, 32 * m, 40, n, m, 8)
    assert w.shape == (32 * m, 40) and w.dtype == np.int64
    assert w.min() >= -128 and w.max() <= 127
    assert ((w.reshape(-1, m, 40) != 0).sum(axis=1) <= n).all()
    np.testing.assert_array_equal(prune_nm(w, n, m), w)
    if n == m:
        assert w.min() == -128 and w.max() == 127  # dense keeps the full range, extremes included
