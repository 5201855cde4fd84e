"""Run-time N:M patterns (dual mode) in the golden model (golden/nm.py, golden/gemm.py): the
pattern table, the beat layout of an N':M' compressed GEMM onto windows, the malformed check and
the beat-accumulated GEMM, against loops written straight from the definitions."""
import itertools

import numpy as np
import pytest

from nmforge.golden.gemm import gemm_int, runtime_gemm_int
from nmforge.golden.ints import int_range, random_ints, saturate, wrap
from nmforge.golden.nm import (MetadataError, act_windows, beat_span, compress_runtime,
                               parse_runtime_pattern, pattern_id_bits, pattern_name, prune_nm,
                               runtime_bad_groups, runtime_decompress, runtime_index_bits,
                               runtime_pattern_id, runtime_patterns, runtime_window,
                               validate_runtime_indices, validate_runtime_metadata,
                               window_positions)

DESIGNS = [(4, 8), (2, 4), (2, 8), (1, 8), (3, 8), (4, 4), (8, 16), (1, 2)]


def names(n, mmax):
    return [pattern_name(p) for p in runtime_patterns(n, mmax)]


def test_pattern_table_of_a_4_8_design():
    assert names(4, 8) == ["dense", "1:2", "1:4", "2:4", "1:8", "2:8", "4:8"]
    assert runtime_patterns(4, 8)[0] == (4, 4)
    assert pattern_id_bits(4, 8) == 3 and runtime_index_bits(8) == 3
    assert runtime_window(4, 8) == 32
    assert [beat_span(p, 4) for p in runtime_patterns(4, 8)] == [4, 8, 16, 8, 32, 16, 8]


@pytest.mark.parametrize("n,mmax", DESIGNS)
def test_pattern_table_rules(n, mmax):
    table = runtime_patterns(n, mmax)
    assert table[0] == (n, n) and len(set(table)) == len(table)
    want = {(np_, mp) for mp in (2, 4, 8, 16) if mp <= mmax for np_ in range(1, n + 1)
            if n % np_ == 0 and np_ < mp}
    assert set(table[1:]) == want
    assert len(table) < 1 << pattern_id_bits(n, mmax)  # an unknown id always exists
    for pid, pattern in enumerate(table):
        assert runtime_pattern_id(pattern_name(pattern), n, mmax) == pid
        assert beat_span(pattern, n) <= runtime_window(n, mmax)
        assert runtime_window(n, mmax) % beat_span(pattern, n) == 0


def test_pattern_names():
    assert parse_runtime_pattern("dense", 4, 8) == (4, 4)
    assert parse_runtime_pattern("4:4", 4, 8) == (4, 4)
    assert parse_runtime_pattern(" 1:8 ", 4, 8) == (1, 8)
    for bad in ("3:8", "2:2", "1:16", "8:8", "x"):
        with pytest.raises(ValueError, match="allowed: dense, 1:2"):
            parse_runtime_pattern(bad, 4, 8)


def reference_gemm(a, values, indices, pattern, n, mmax, acc_width, overflow):
    """Straight from the beat layout: per beat, per lane i, element `index` of lane block i
    (window[i * Mmax + index]) times the lane's value; the beat's sum goes through the policy."""
    np_, mp = pattern
    windows = act_windows(a, pattern, n, mmax)  # (rows, B, window)
    rows, beats, _ = windows.shape
    cols = values.shape[1]
    policy = wrap if overflow == "wrap" else saturate
    lo, hi = int_range(acc_width)
    acc = np.zeros((rows, cols), dtype=np.int64)
    overflowed = False
    for b in range(beats):
        for r in range(rows):
            for c in range(cols):
                total = 0
                for i in range(n):
                    pos = i * mmax + int(indices[b * n + i, c])
                    total += int(windows[r, b, pos]) * int(values[b * n + i, c])
                exact = int(acc[r, c]) + total
                overflowed |= not lo <= exact <= hi
                acc[r, c] = policy(np.int64(exact), acc_width)
    return acc, overflowed


@pytest.mark.parametrize("n,mmax", [(4, 8), (2, 4), (3, 8)])
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_runtime_gemm_is_the_beat_layout(n, mmax, overflow):
    rng = np.random.default_rng(n * 100 + mmax)
    for pattern in runtime_patterns(n, mmax):
        np_, mp = pattern
        k = runtime_window(n, mmax) * 3
        a = random_ints(rng, (3, k), 8)
        w = random_ints(rng, (k, 2), 8)
        if np_ < mp:
            w = prune_nm(w, np_, mp)
        values, indices = compress_runtime(w, pattern)
        assert values.shape == (k // mp * np_, 2) and values.shape[0] % n == 0
        assert np.array_equal(runtime_decompress(values, indices, pattern), w)
        got = runtime_gemm_int(a, values, indices, pattern, n, 18, overflow)
        want = reference_gemm(a, values, indices, pattern, n, mmax, 18, overflow)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1], pattern
        if overflow == "wrap":  # wrapping sums do not depend on the accumulation step
            assert np.array_equal(got[0], gemm_int(a, w, mp, 18, "wrap")[0])
        # window positions: lane i of a beat reads its block, i * Mmax + index
        pos = window_positions(indices, pattern, n, mmax).reshape(-1, n, 2)
        assert (pos // mmax == np.arange(n)[None, :, None]).all()
        windows = act_windows(a, pattern, n, mmax)
        span = beat_span(pattern, n)
        assert windows.shape == (3, k // span, runtime_window(n, mmax))
        for b in range(k // span):  # block i starts with the M' elements of lane i's group
            for i in range(n):
                start = b * span + (i // np_) * mp
                assert np.array_equal(windows[:, b, i * mmax:i * mmax + mp], a[:, start:start + mp])


def test_dense_pattern_compresses_to_every_index():
    w = np.arange(1, 25).reshape(12, 2)
    values, indices = compress_runtime(w, (4, 4))
    assert np.array_equal(values, w)
    assert indices[:, 0].tolist() == [0, 1, 2, 3] * 3


def test_compress_refuses_full_groups():
    with pytest.raises(ValueError, match="group \\(0, 0\\): 4 non-zeros > N=2"):
        compress_runtime(np.ones((4, 1), dtype=np.int64), (2, 4))


def hand_bad_groups(pid, idx, n, mmax):
    """One metadata word (pattern id, N indices) by the definition."""
    table = runtime_patterns(n, mmax)
    if pid >= len(table):
        return 1
    np_, mp = table[pid]
    bad = 0
    for g in range(n // np_):
        lanes = idx[g * np_:(g + 1) * np_]
        bad += any(x >= mp for x in lanes) or any(x >= y for x, y in zip(lanes, lanes[1:]))
    return bad


@pytest.mark.parametrize("n,mmax", [(2, 4), (4, 8), (3, 8)])
def test_bad_groups_every_word(n, mmax):
    """Exhaustive over pattern ids and index tuples (random tuples for wide words)."""
    bits = runtime_index_bits(mmax)
    ids = range(1 << pattern_id_bits(n, mmax))
    tuples = list(itertools.product(range(1 << bits), repeat=n))
    if len(tuples) > 600:
        rng = np.random.default_rng(1)
        tuples = [tuples[i] for i in rng.choice(len(tuples), 600, replace=False)]
        tuples += [tuple(range(n))] + [tuple(sorted(rng.choice(mmax, n, replace=False)))
                                       for _ in range(50)]
    words = [(pid, t) for pid in ids for t in tuples]
    pattern_ids = np.array([[pid for pid, _ in words]])  # one beat, one column per word
    indices = np.array([t for _, t in words]).T          # (N, words)
    got = runtime_bad_groups(pattern_ids, indices, n, mmax)[0]
    want = [hand_bad_groups(pid, t, n, mmax) for pid, t in words]
    assert got.tolist() == want
    assert 0 in want and max(want) >= 1


def test_malformed_metadata_names_the_group():
    n, mmax = 4, 8
    pid = runtime_pattern_id("2:8", n, mmax)
    indices = np.tile(np.array([[1], [5], [0], [7]]), (3, 2))  # 3 beats, 2 columns
    ids = np.full((3, 2), pid)
    validate_runtime_metadata(ids, indices, n, mmax)
    assert not runtime_bad_groups(ids, indices, n, mmax).any()
    broken = indices.copy()
    broken[2 * 4 + 3, 1] = 0  # beat 2, lane 3 = group 5 (second group of the beat), column 1
    with pytest.raises(MetadataError, match="not strictly increasing") as info:
        validate_runtime_metadata(ids, broken, n, mmax)
    assert (info.value.group, info.value.col) == (5, 1)
    with pytest.raises(MetadataError) as info:
        validate_runtime_indices(broken, (2, 8))
    assert (info.value.group, info.value.col) == (5, 1)
    ids[1, 0] = 7  # unknown
    with pytest.raises(MetadataError, match="unknown pattern id 7"):
        validate_runtime_metadata(ids, indices, n, mmax)
    out = indices.copy()
    out[0, 0] = 4  # 1:4 needs indices 0..3
    with pytest.raises(MetadataError, match="index 4 outside 0..3"):
        validate_runtime_indices(out, (1, 4))
