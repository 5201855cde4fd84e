"""N:M structured sparsity (SPEC section 1): pruning, compression and metadata encodings.

A weight matrix `w` has shape (K, cols). Groups are M consecutive elements along axis 0 (the
reduction dimension K), so group g of column col is `w[g*M:(g+1)*M, col]`. The compressed form
stores N values per group: `values` and `indices` have shape (K//M*N, cols), rows g*N .. g*N+N-1
belonging to group g. The bitmap encoding has one M-bit word per group, shape (K//M, cols).
"""

import operator

import numpy as np

from .ints import int_array, random_ints

SUPPORTED_M = (2, 4, 8, 16)


class MetadataError(ValueError):
    """Malformed N:M metadata; `group` and `col` locate the first offending group."""

    def __init__(self, group, col, problem):
        super().__init__(f"group ({group}, {col}): {problem}")
        self.group = group
        self.col = col


def check_pattern(n, m):
    """Validate an N:M pattern (M in SUPPORTED_M, 1 <= N <= M); return (n, m) as Python ints."""
    n, m = operator.index(n), operator.index(m)
    if m not in SUPPORTED_M:
        raise ValueError(f"unsupported M={m}: M must be one of {SUPPORTED_M}")
    if not 1 <= n <= m:
        raise ValueError(f"unsupported N={n} for M={m}: N must be in 1..{m}")
    return n, m


def num_groups(k, m):
    """Number of M-groups along a reduction dimension of length K; ValueError unless M divides K."""
    k, m = operator.index(k), operator.index(m)
    if m < 1:
        raise ValueError(f"M must be a positive integer, got M={m}")
    if k % m:
        raise ValueError(f"K={k} is not a multiple of M={m}")
    return k // m


def _matrix(x, name):
    """`x` as a 2-D integer ndarray."""
    x = int_array(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    return x


def _grouped(x, rows_per_group, name):
    """View a 2-D integer array of shape (G*rows_per_group, cols) as (G, rows_per_group, cols)."""
    x = _matrix(x, name)
    if x.shape[0] % rows_per_group:
        raise ValueError(f"{name} has {x.shape[0]} rows, not a multiple of {rows_per_group}")
    return x.reshape(x.shape[0] // rows_per_group, rows_per_group, x.shape[1])


def _weight_groups(w, m):
    """View weights (K, cols) as (K//M, M, cols), with the K-multiple-of-M error naming K and M."""
    w = _matrix(w, "w")
    num_groups(w.shape[0], m)
    return _grouped(w, m, "w")


def _first_positions(mask, n):
    """Per group (axis 1), the positions of the first `n` set entries of `mask`, followed by the
    lowest unset positions if fewer than `n` are set; returned sorted ascending, shape (G, n, cols)."""
    order = np.argsort(~mask, axis=1, kind="stable")
    return np.sort(order[:, :n], axis=1)


def prune_nm(w, n, m):
    """Keep the N largest-magnitude elements of each group (ties to the lower index), zero the rest.

    Returns an array of `w`'s dtype and shape; magnitudes are taken of the values read as int64.
    """
    n, m = check_pattern(n, m)
    groups = _weight_groups(w, m)
    magnitude = np.abs(groups.astype(np.int64)).astype(np.uint64)  # |-2**63| is exact in uint64
    order = np.argsort(~magnitude, axis=1, kind="stable")  # descending magnitude, ties to lower index
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n], True, axis=1)
    return np.where(keep, groups, np.zeros((), groups.dtype)).reshape(np.shape(w))


def compress_nm(w, n, m):
    """Compress N:M-sparse weights to (values, indices), each of shape (K//M*N, cols).

    `indices` (uint8) holds each kept value's position within its group, strictly increasing; a
    group with fewer than N non-zeros is padded with zero values at its lowest unused positions.
    Raises ValueError naming the first group with more than N non-zeros.
    """
    n, m = check_pattern(n, m)
    groups = _weight_groups(w, m)
    nonzero = groups != 0
    dense = nonzero.sum(axis=1) > n
    if dense.any():
        g, col = np.argwhere(dense)[0]
        raise ValueError(
            f"group ({g}, {col}): {nonzero[g, :, col].sum()} non-zeros > N={n}; prune_nm first"
        )
    positions = _first_positions(nonzero, n)
    values = np.take_along_axis(groups, positions, axis=1)
    shape = (groups.shape[0] * n, groups.shape[2])
    return values.reshape(shape), positions.astype(np.uint8).reshape(shape)


def _compressed_groups(values, indices, n):
    """View same-shaped compressed `values` and `indices` as (G, N, cols); indices as intp."""
    if np.shape(values) != np.shape(indices):
        raise ValueError(f"values shape {np.shape(values)} != indices shape {np.shape(indices)}")
    return _grouped(values, n, "values"), _grouped(indices, n, "indices").astype(np.intp)


def kept_pairs(a, values, indices, n, m):
    """The (activation, weight) pairs a sparse PE multiplies, for every output of C = A x W:
    returns (acts, weights), both (rows, cols, G, N): beat g, lane l of output (i, j) pairs
    a[i, g*M + indices[g*N + l, j]] with values[g*N + l, j]. Validates the metadata first.
    Works for any element codes (integers, format codes, packed words)."""
    n, m = check_pattern(n, m)
    validate_indices(indices, n, m)
    value_groups, positions = _compressed_groups(values, indices, n)   # (G, N, cols)
    a = np.asarray(a)
    groups = value_groups.shape[0]
    if a.ndim != 2 or a.shape[1] != groups * m:
        raise ValueError(f"a has shape {a.shape}, expected (rows, {groups * m}) for {groups} groups of M={m}")
    acts = a[:, np.arange(groups)[:, None, None] * m + positions]      # (rows, G, N, cols)
    acts = acts.transpose(0, 3, 1, 2)
    weights = np.broadcast_to(value_groups.transpose(2, 0, 1), acts.shape)
    return acts, weights


def malformed_groups(indices, n, m):
    """Bool array (K//M, cols): True where a group's indices are out of 0..M-1 or not strictly increasing."""
    n, m = check_pattern(n, m)
    groups = _grouped(indices, n, "indices").astype(np.int64)
    out_of_range = ((groups < 0) | (groups >= m)).any(axis=1)
    not_increasing = (np.diff(groups, axis=1) <= 0).any(axis=1)
    return out_of_range | not_increasing


def validate_indices(indices, n, m):
    """Raise MetadataError for the first malformed index group (lowest group, then lowest column)."""
    bad = malformed_groups(indices, n, m)
    if not bad.any():
        return
    g, col = (int(i) for i in np.argwhere(bad)[0])
    group = [int(i) for i in _grouped(indices, n, "indices")[g, :, col]]
    wrong = [i for i in group if not 0 <= i < m]
    if wrong:
        problem = f"index {wrong[0]} >= M={m}" if wrong[0] >= m else f"index {wrong[0]} < 0"
    else:
        problem = "indices not strictly increasing"
    raise MetadataError(g, col, f"{problem} (indices {group})")


def decompress_nm(values, indices, n, m):
    """Expand compressed (values, indices) back to the (K, cols) weight matrix; validates metadata first."""
    validate_indices(indices, n, m)
    value_groups, positions = _compressed_groups(values, indices, n)
    groups, _, cols = value_groups.shape
    w = np.zeros((groups, m, cols), dtype=value_groups.dtype)
    np.put_along_axis(w, positions, value_groups, axis=1)
    return w.reshape(groups * m, cols)


def indices_to_bitmap(indices, n, m):
    """Bitmap metadata (K//M, cols) uint16: bit i of a group's word is set when element i is kept."""
    validate_indices(indices, n, m)
    groups = _grouped(indices, n, "indices").astype(np.uint16)
    return np.bitwise_or.reduce(np.left_shift(np.uint16(1), groups), axis=1)


def _bitmap_bits(bitmap, m):
    """The low M bits of each bitmap word as bools, shape (G, M, cols)."""
    words = _matrix(bitmap, "bitmap").astype(np.int64)
    return ((words[:, None, :] >> np.arange(m)[None, :, None]) & 1).astype(bool)


def malformed_bitmap_groups(bitmap, n, m):
    """Bool array (K//M, cols): True where a bitmap word has a bit outside 0..M-1 set or popcount != N."""
    n, m = check_pattern(n, m)
    outside = (_matrix(bitmap, "bitmap").astype(np.int64) >> m) != 0
    return outside | (_bitmap_bits(bitmap, m).sum(axis=1) != n)


def bitmap_to_indices(bitmap, n, m):
    """Indices (K//M*N, cols) uint8 of the set bits of each bitmap word, ascending.

    Raises MetadataError for the first malformed word (lowest group, then lowest column).
    """
    bad = malformed_bitmap_groups(bitmap, n, m)
    bits = _bitmap_bits(bitmap, m)
    if bad.any():
        g, col = (int(i) for i in np.argwhere(bad)[0])
        word = int(np.asarray(bitmap)[g, col])
        if word >> m:
            problem = f"bitmap {word:#x} has bits set outside 0..M-1 (M={m})"
        else:
            problem = f"bitmap popcount {int(bits[g, :, col].sum())} != N={n} (bitmap {word:#x})"
        raise MetadataError(g, col, problem)
    return _first_positions(bits, n).astype(np.uint8).reshape(bits.shape[0] * n, bits.shape[2])


def random_nm_weights(rng, k, cols, n, m, width):
    """Random signed full-range `width`-bit int64 weights of shape (k, cols), pruned to N:M."""
    return prune_nm(random_ints(rng, (k, cols), width), n, m)


# --- Run-time patterns (dual mode) --------------------------------------------------------------
#
# A run-time design has N multipliers per PE and groups of up to Mmax elements (config
# `nm = "N:Mmax"`, `runtime = true`). It runs every pattern of `runtime_patterns(N, Mmax)`,
# chosen per beat and column by a pattern id that travels with the weights. One beat of pattern
# N':M' carries N/N' consecutive groups of M' (so all N multipliers work): S = N*M'/N'
# K-elements (`beat_span`). Per column it carries N values and N group-relative indices; lane
# (multiplier) i belongs to group i // N'. Per row it carries a window of N lane blocks of Mmax
# activations (`act_windows`): block i holds the M' elements of lane i's group (then filler), so
# multiplier i reads block i at its index, whatever the pattern (lanes of one group get copies
# of the same group). Dense is the pattern N:N: one group of N elements, indices 0..N-1.

DENSE = "dense"


def runtime_patterns(n, mmax):
    """The pattern table of a run-time design: a tuple of (N', M'); the position is the pattern id.

    Id 0 is dense, (N, N). Then every N':M' with M' in SUPPORTED_M, M' <= Mmax, N' dividing N and
    N' < M', ordered by M', then N'. For 4:8: dense, 1:2, 1:4, 2:4, 1:8, 2:8, 4:8.
    """
    n, mmax = check_pattern(n, mmax)
    table = [(n, n)]
    for mp in SUPPORTED_M:
        if mp <= mmax:
            table += [(np_, mp) for np_ in range(1, min(n, mp - 1) + 1) if n % np_ == 0]
    return tuple(table)


def pattern_name(pattern):
    """"dense" for N':M' with N' == M', else "N':M'"."""
    np_, mp = pattern
    return DENSE if np_ == mp else f"{np_}:{mp}"


def pattern_id_bits(n, mmax):
    """Bits of the pattern id: enough for one more id than the table has, so every design has an
    unknown id (the hardware flags it as malformed)."""
    return len(runtime_patterns(n, mmax)).bit_length()


def runtime_index_bits(mmax):
    """Bits of one group-relative index: ceil(log2 Mmax)."""
    return (operator.index(mmax) - 1).bit_length()


def parse_runtime_pattern(text, n, mmax):
    """The (N', M') of a pattern name ("dense", "N:N" for dense, or "N':M'") in the table of an
    N:Mmax run-time design; ValueError naming the allowed names otherwise."""
    table = runtime_patterns(n, mmax)
    names = [pattern_name(p) for p in table]
    text = str(text).strip()
    if text == f"{n}:{n}":
        text = DENSE
    if text not in names:
        raise ValueError(f"pattern {text!r} does not run on a {n}:{mmax} run-time design; "
                         f"allowed: {', '.join(names)}")
    return table[names.index(text)]


def runtime_pattern_id(pattern, n, mmax):
    """The id of (N', M') or of a pattern name in the design's table."""
    if isinstance(pattern, str):
        pattern = parse_runtime_pattern(pattern, n, mmax)
    return runtime_patterns(n, mmax).index(tuple(pattern))


def beat_span(pattern, n):
    """K-elements one beat of pattern (N', M') covers on a design with N multipliers: N*M'/N'."""
    np_, mp = pattern
    return n * mp // np_


def runtime_window(n, mmax):
    """Activations per row and beat of an N:Mmax run-time design: N*Mmax (the span of 1:Mmax)."""
    return n * mmax


def _pattern_groups(indices, pattern, name="indices"):
    """(G, N', cols) view of group-relative indices of pattern (N', M')."""
    return _grouped(indices, pattern[0], name)


def compress_runtime(w, pattern):
    """Compress weights (K, cols) with at most N' non-zeros per group of M' to (values, indices),
    each (K/M'*N', cols), as `compress_nm` (padding under-full groups with zeros at the lowest
    free positions) but for any pattern of a run-time table, dense (N:N) included."""
    np_, mp = pattern
    w = _matrix(w, "w")
    num_groups(w.shape[0], mp)
    groups = _grouped(w, mp, "w")
    nonzero = groups != 0
    full = nonzero.sum(axis=1) > np_
    if full.any():
        g, col = np.argwhere(full)[0]
        raise ValueError(f"group ({g}, {col}): {nonzero[g, :, col].sum()} non-zeros > N={np_}")
    positions = _first_positions(nonzero, np_)
    values = np.take_along_axis(groups, positions, axis=1)
    shape = (groups.shape[0] * np_, groups.shape[2])
    return values.reshape(shape), positions.astype(np.uint8).reshape(shape)


def _pattern_malformed(groups, mp):
    """Bool (G, cols): a group's indices (G, N', cols) reach M', are negative or do not strictly increase."""
    groups = groups.astype(np.int64)
    return (((groups < 0) | (groups >= mp)).any(axis=1)
            | (np.diff(groups, axis=1) <= 0).any(axis=1))


def validate_runtime_indices(indices, pattern):
    """Raise MetadataError for the first malformed group of pattern (N', M') (lowest group, then
    lowest column); groups are numbered along K (beat b holds groups b*N/N' ..)."""
    np_, mp = pattern
    groups = _pattern_groups(indices, pattern)
    bad = _pattern_malformed(groups, mp)
    if bad.any():
        g, col = (int(i) for i in np.argwhere(bad)[0])
        group = [int(i) for i in groups[g, :, col]]
        wrong = [i for i in group if not 0 <= i < mp]
        problem = (f"index {wrong[0]} outside 0..{mp - 1}" if wrong
                   else "indices not strictly increasing")
        raise MetadataError(g, col, f"{problem} (indices {group}, pattern {pattern_name(pattern)})")


def runtime_decompress(values, indices, pattern):
    """The (K, cols) weights of a compressed pattern-(N', M') GEMM; validates the indices first."""
    np_, mp = pattern
    validate_runtime_indices(indices, pattern)
    value_groups = _grouped(values, np_, "values")
    positions = _pattern_groups(indices, pattern).astype(np.intp)
    if value_groups.shape != positions.shape:
        raise ValueError(f"values shape {np.shape(values)} != indices shape {np.shape(indices)}")
    w = np.zeros((value_groups.shape[0], mp, value_groups.shape[2]), dtype=value_groups.dtype)
    np.put_along_axis(w, positions, value_groups, axis=1)
    return w.reshape(-1, w.shape[2])


def runtime_bad_groups(pattern_ids, indices, n, mmax):
    """What the hardware counts, per beat and column: (B, cols) ints. `pattern_ids` (B, cols),
    `indices` (B*N, cols) as on the wire. A word with an unknown pattern id counts as one bad
    group; otherwise the count is the number of the beat's N/N' groups of its pattern whose
    indices are malformed (reach M' or do not strictly increase)."""
    table = runtime_patterns(n, mmax)
    ids = _matrix(pattern_ids, "pattern_ids")
    beats = _grouped(indices, n, "indices")  # (B, N, cols)
    if beats.shape[0] != ids.shape[0] or beats.shape[2] != ids.shape[1]:
        raise ValueError(f"pattern_ids shape {ids.shape} does not match {beats.shape[0]} beats "
                         f"of {beats.shape[2]} columns")
    out = np.ones(ids.shape, dtype=np.int64)
    for pid, (np_, mp) in enumerate(table):
        groups = beats.reshape(beats.shape[0] * (n // np_), np_, beats.shape[2])
        bad = _pattern_malformed(groups, mp).reshape(beats.shape[0], n // np_, beats.shape[2])
        out = np.where(ids == pid, bad.sum(axis=1), out)
    return out


def validate_runtime_metadata(pattern_ids, indices, n, mmax):
    """Raise MetadataError for the first bad metadata word on the wire (lowest beat, then lowest
    column): an unknown pattern id, or a malformed group (named by its number along K)."""
    table = runtime_patterns(n, mmax)
    counts = runtime_bad_groups(pattern_ids, indices, n, mmax)
    if not counts.any():
        return
    beat, col = (int(i) for i in np.argwhere(counts)[0])
    pid = int(np.asarray(pattern_ids)[beat, col])
    if not 0 <= pid < len(table):
        raise MetadataError(beat, col, f"unknown pattern id {pid} in beat {beat} (known: "
                            f"0..{len(table) - 1}); the group is named by its beat")
    pattern = table[pid]
    words = _grouped(indices, n, "indices")[beat:beat + 1]  # this beat: (1, N, cols)
    try:
        validate_runtime_indices(words.reshape(n, -1), pattern)
    except MetadataError as e:
        per_beat = n // pattern[0]
        raise MetadataError(beat * per_beat + e.group, e.col,
                            str(e).split(": ", 1)[1] + f" in beat {beat}") from None


def window_positions(indices, pattern, n, mmax):
    """Window positions (B*N, cols) the lanes of each beat read for group-relative `indices` of
    pattern (N', M'): lane i reads block i, window[i*Mmax + index]."""
    idx = _grouped(indices, n, "indices").astype(np.int64)  # (B, N, cols)
    return (idx + (np.arange(n) * mmax)[None, :, None]).reshape(-1, idx.shape[2])


def act_windows(a, pattern, n, mmax):
    """Per row and beat the activation window (rows, B, N*Mmax) of pattern (N', M'): N lane
    blocks of Mmax; block i holds the M' K-elements of lane i's group (group i // N' of the
    beat), then filler up to Mmax (the group's elements again, reversed, so that a wrongly
    routed lane reads a real value)."""
    np_, mp = pattern
    a = np.asarray(a)
    span = beat_span(pattern, n)
    beats = num_groups(a.shape[1], span)
    groups = a.reshape(a.shape[0], beats, n // np_, mp)          # (rows, B, N/N', M')
    lanes = groups[:, :, np.arange(n) // np_, :]                # (rows, B, N, M')
    filler = lanes[:, :, :, mp - 1 - np.arange(mmax - mp) % mp]  # (rows, B, N, Mmax-M')
    blocks = np.concatenate([lanes, filler], axis=3)
    return blocks.reshape(a.shape[0], beats, n * mmax)
