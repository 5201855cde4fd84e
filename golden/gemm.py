"""Bit-exact integer GEMM semantics of the MAC arrays (SPEC section 2, integer accumulation).

C = A @ W with A (rows, K) and W (K, cols). K is processed in groups of M in ascending order: each
group's sum is formed exactly, then `acc = policy(acc + group_sum)` where the policy wraps or
saturates the exact sum to `acc_width` signed bits. A sticky flag records whether any update's
exact sum fell outside the signed `acc_width` range (for both policies).
"""

import numpy as np

from .ints import int_array, int_range, saturate, wrap
from .nm import (_compressed_groups, beat_span, check_pattern, num_groups, runtime_decompress,
                 validate_indices)

MAX_ACC_WIDTH = 48
POLICIES = {"wrap": wrap, "saturate": saturate}


def _check_operands(a, w, m):
    """Return `a` and `w` as int64, raising ValueError if an exact group sum could exceed int64."""
    a = int_array(a, "a").astype(np.int64)
    w = int_array(w, "w").astype(np.int64)
    bound = m
    for x in (a, w):
        bound *= max(-int(np.min(x, initial=0)), int(np.max(x, initial=0)))
    if bound > 1 << 62:
        raise ValueError("operands too large: exact group sums would not fit in int64")
    return a, w


def _accumulate(group_sums, acc_width, overflow):
    """Fold exact group sums (G, rows, cols) in ascending group order; return (acc, overflowed)."""
    if overflow not in POLICIES:
        raise ValueError(f"overflow must be one of {sorted(POLICIES)}, got {overflow!r}")
    if not 1 <= acc_width <= MAX_ACC_WIDTH:
        raise ValueError(f"acc_width must be in 1..{MAX_ACC_WIDTH}, got {acc_width}")
    policy = POLICIES[overflow]
    lo, hi = int_range(acc_width)
    acc = np.zeros(group_sums.shape[1:], dtype=np.int64)
    overflowed = False
    for group_sum in group_sums:
        exact = acc + group_sum
        overflowed |= bool(((exact < lo) | (exact > hi)).any())
        acc = policy(exact, acc_width)
    return acc, overflowed


def group_sums(a, w, m):
    """Exact sums (G, rows, cols) of A @ W over each group of M along K: what the accumulator
    adds, step by step."""
    a, w = _check_operands(a, w, m)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise ValueError(f"shapes {a.shape} and {w.shape} do not form a matrix product")
    groups = num_groups(w.shape[0], m)
    a_groups = a.reshape(a.shape[0], groups, m).transpose(1, 0, 2)
    return a_groups @ w.reshape(groups, m, w.shape[1])


def gemm_int(a, w, m, acc_width, overflow):
    """Dense reference: C = A @ W accumulated group by group (M along K); returns (c, overflowed)."""
    return _accumulate(group_sums(a, w, m), acc_width, overflow)


def sparse_group_sums(a, values, indices, n, m):
    """Exact sums (G, rows, cols) of each group's N kept products, from W's compressed N:M form
    (the activations gathered by index); validates the metadata first (MetadataError)."""
    n, m = check_pattern(n, m)
    validate_indices(indices, n, m)
    value_groups, positions = _compressed_groups(values, indices, n)
    a, value_groups = _check_operands(a, value_groups, m)
    groups = value_groups.shape[0]
    if a.ndim != 2 or a.shape[1] != groups * m:
        raise ValueError(f"a has shape {a.shape}, expected (rows, {groups * m}) for {groups} groups of M={m}")
    a_groups = a.reshape(a.shape[0], groups, m)
    kept = a_groups[:, np.arange(groups)[:, None, None], positions]  # (rows, G, N, cols)
    return np.einsum("rgjc,gjc->grc", kept, value_groups)


def sparse_gemm_int(a, values, indices, n, m, acc_width, overflow, beat_groups=1):
    """C = A @ W from W's compressed N:M form, gathering the kept activations by index.

    Validates the metadata first (MetadataError); returns (c, overflowed), equal to `gemm_int` on
    the decompressed weights. `beat_groups` > 1 (a dot-product array): the accumulator takes
    the exact sum of that many consecutive groups at a time (saturation and the overflow flag
    apply per beat, not per group).
    """
    return _accumulate(per_beat(sparse_group_sums(a, values, indices, n, m), beat_groups),
                       acc_width, overflow)


def per_beat(sums, beat_groups):
    """Exact sums (G, ...) of consecutive groups combined per beat of `beat_groups` of them
    (a dot-product PE sums a beat exactly before its accumulator takes it): (G/beat_groups, ...)."""
    if beat_groups == 1:
        return sums
    return sums.reshape(sums.shape[0] // beat_groups, beat_groups, *sums.shape[1:]).sum(axis=1)


def runtime_gemm_int(a, values, indices, pattern, n, acc_width, overflow):
    """C = A @ W on a run-time design with N multipliers per PE running pattern (N', M')
    (golden.nm.runtime_patterns), W in its compressed N':M' form (golden.nm.compress_runtime).

    The hardware sums each beat's N products (N/N' groups, golden.nm.beat_span K-elements) and
    then applies the accumulator policy, so this is `gemm_int` on the decompressed W with the
    beat span as the accumulation step. Validates the indices first (MetadataError).
    """
    return _accumulate(runtime_beat_sums(a, values, indices, pattern, n), acc_width, overflow)


def runtime_beat_sums(a, values, indices, pattern, n):
    """Exact sums (B, rows, cols) of each beat's N products on a run-time design running
    pattern (N', M') (a beat: N/N' groups, golden.nm.beat_span K-elements)."""
    return group_sums(a, runtime_decompress(values, indices, pattern), beat_span(pattern, n))
