"""Two's-complement integer helpers shared by the golden models and the testbenches.

Every function takes a bit width between 1 and 63, so that all values and bit patterns are exact
in int64, and returns int64 arrays.
"""

import operator

import numpy as np

MAX_WIDTH = 63


def int_array(x, name="x"):
    """Return `x` as an ndarray, raising TypeError unless its dtype is an integer type."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr


def int_range(width, signed=True):
    """Return the inclusive range (lo, hi) of a `width`-bit integer, signed (two's complement) or not."""
    width = operator.index(width)
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"width must be in 1..{MAX_WIDTH}, got {width}")
    if signed:
        return -(1 << (width - 1)), (1 << (width - 1)) - 1
    return 0, (1 << width) - 1


def random_ints(rng, shape, width, signed=True):
    """Draw uniform int64 values over the full inclusive `width`-bit range (min and max included)."""
    lo, hi = int_range(width, signed)
    return rng.integers(lo, hi, size=shape, dtype=np.int64, endpoint=True)


def _in_range(x, lo, hi, what):
    """Return `x` as int64, raising ValueError if any element lies outside [lo, hi]."""
    x = int_array(x).astype(np.int64)
    bad = (x < lo) | (x > hi)
    if bad.any():
        raise ValueError(f"value {x[bad].flat[0]} outside the {what} range [{lo}, {hi}]")
    return x


def to_unsigned(x, width):
    """Two's-complement bit pattern (0 .. 2**width - 1) of signed `width`-bit values `x`."""
    lo, hi = int_range(width)
    mask = int_range(width, signed=False)[1]
    return _in_range(x, lo, hi, f"signed {width}-bit") & mask


def from_unsigned(u, width):
    """Signed value of `width`-bit two's-complement bit patterns `u` (0 .. 2**width - 1)."""
    lo, hi = int_range(width, signed=False)
    shift = 64 - width
    return (_in_range(u, lo, hi, f"unsigned {width}-bit") << shift) >> shift


def wrap(x, width):
    """Wrap arbitrary int64 values to signed `width`-bit two's complement (keep the low bits)."""
    mask = int_range(width, signed=False)[1]
    return from_unsigned(int_array(x).astype(np.int64) & mask, width)


def saturate(x, width):
    """Clamp int64 values to the signed `width`-bit range."""
    lo, hi = int_range(width)
    return np.clip(int_array(x).astype(np.int64), lo, hi)
