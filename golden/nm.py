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
