"""The host's share of a model: im2col, fold back, pooling, residual add (numpy).

The same functions serve the float executor (float64 arrays) and the integer one (int64
arrays); where integer rounding matters it is stated.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def im2col(x, kernel, stride, padding):
    """Patches of NCHW `x` as GEMM rows: (B*OH*OW, C*kh*kw), columns in (c, i, j) order (the
    order of a Conv2d weight reshaped to (out, -1)); zero padding. Rows in (b, oh, ow) order."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # B,C,OH,OW,kh,kw
    b, c, oh, ow = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, c * kh * kw)


def to_nchw(rows, spatial):
    """GEMM rows (B*OH*OW, C) in (b, oh, ow) order back to (B, C, OH, OW)."""
    oh, ow = spatial
    return rows.reshape(-1, oh, ow, rows.shape[1]).transpose(0, 3, 1, 2)


def _windows(x, kernel, stride):
    (kh, kw), (sh, sw) = kernel, stride
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def maxpool(x, kernel, stride):
    """2-D max pooling of NCHW `x`, no padding (exact on integers: max commutes with the
    monotone quantization)."""
    return _windows(x, kernel, stride).max(axis=(4, 5))


def avgpool(x, kernel, stride):
    """2-D average pooling of NCHW `x`, no padding. Integers: the window sum divided by the
    window size with half-up rounding, floor((2*sum + k) / (2*k)); floats: the exact mean."""
    sums = _windows(x, kernel, stride).sum(axis=(4, 5))
    k = kernel[0] * kernel[1]
    if np.issubdtype(sums.dtype, np.integer):
        return (2 * sums + k) // (2 * k)
    return sums / k


def residual_add_int(x, y, mult_x, mult_y, shift, width):
    """Integer residual add of tensors with different scales: y = clamp(floor((x*mult_x +
    y*mult_y + 2^(shift-1)) / 2^shift)) to signed `width` bits (one dyadic rescale of the exact
    sum, rounded half up)."""
    total = x.astype(np.int64) * mult_x + y.astype(np.int64) * mult_y
    out = (total + (1 << (shift - 1))) >> shift
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return np.clip(out, lo, hi)
