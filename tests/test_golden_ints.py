import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmforge.golden.ints import (
    from_unsigned,
    int_array,
    int_range,
    random_ints,
    saturate,
    to_unsigned,
    wrap,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
WIDTHS = st.integers(1, 63)


def signed_lo_hi(width):
    return -(2 ** (width - 1)), 2 ** (width - 1) - 1


@pytest.mark.parametrize(
    "width, signed, expected",
    [
        (1, True, (-1, 0)),
        (1, False, (0, 1)),
        (2, True, (-2, 1)),
        (4, True, (-8, 7)),
        (8, True, (-128, 127)),
        (8, False, (0, 255)),
        (16, True, (-32768, 32767)),
        (48, True, (-140737488355328, 140737488355327)),
        (63, False, (0, 9223372036854775807)),
    ],
)
def test_int_range(width, signed, expected):
    assert int_range(width, signed) == expected


@pytest.mark.parametrize("width", [0, -1, 64])
def test_bad_width_rejected(width):
    for fn in (int_range, lambda w: wrap(0, w), lambda w: saturate(0, w), lambda w: to_unsigned(0, w),
               lambda w: from_unsigned(0, w), lambda w: random_ints(np.random.default_rng(0), 3, w)):
        with pytest.raises(ValueError, match="width"):
            fn(width)


def test_non_integer_input_rejected():
    with pytest.raises(TypeError, match="integer"):
        wrap(np.array([1.5]), 8)
    with pytest.raises(TypeError, match="integer"):
        int_array([1.0, 2.0])


@pytest.mark.parametrize("width, signed", [(2, True), (2, False), (8, True), (8, False), (16, True)])
def test_random_ints_full_range(width, signed):
    rng = np.random.default_rng(width)
    x = random_ints(rng, (400, 250), width, signed)
    lo = -(2 ** (width - 1)) if signed else 0
    hi = 2 ** (width - 1) - 1 if signed else 2**width - 1
    assert x.dtype == np.int64 and x.shape == (400, 250)
    # 100k draws over at most 2**16 values: both ends appear with overwhelming probability.
    assert x.min() == lo and x.max() == hi
    if width <= 8:
        assert len(np.unique(x)) == hi - lo + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(INT64, min_size=1, max_size=8), WIDTHS)
def test_wrap_matches_modular_reference(xs, width):
    half, full = 2 ** (width - 1), 2**width
    expected = [(x + half) % full - half for x in xs]
    got = wrap(np.array(xs, dtype=np.int64), width)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(INT64, min_size=1, max_size=8), WIDTHS)
def test_saturate_matches_clamp_reference(xs, width):
    lo, hi = signed_lo_hi(width)
    assert saturate(np.array(xs, dtype=np.int64), width).tolist() == [min(max(x, lo), hi) for x in xs]


@settings(max_examples=200, deadline=None)
@given(st.data(), WIDTHS)
def test_unsigned_round_trip(data, width):
    lo, hi = signed_lo_hi(width)
    xs = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=8))
    u = to_unsigned(np.array(xs), width)
    assert u.tolist() == [x % 2**width for x in xs]
    assert from_unsigned(u, width).tolist() == xs
    us = data.draw(st.lists(st.integers(0, 2**width - 1), min_size=1, max_size=8))
    assert from_unsigned(np.array(us), width).tolist() == [v - 2**width if v >= 2 ** (width - 1) else v for v in us]


def test_unsigned_hand_cases():
    assert to_unsigned(np.array([-1, -128, 127, 0]), 8).tolist() == [255, 128, 127, 0]
    assert from_unsigned(np.array([255, 128, 127, 0]), 8).tolist() == [-1, -128, 127, 0]
    assert to_unsigned(np.array([-1]), 1).tolist() == [1]
    assert from_unsigned(np.array([1]), 1).tolist() == [-1]


@pytest.mark.parametrize("fn, value", [(to_unsigned, 128), (to_unsigned, -129), (from_unsigned, 256), (from_unsigned, -1)])
def test_unsigned_out_of_range_rejected(fn, value):
    with pytest.raises(ValueError, match=str(value)):
        fn(np.array([0, value]), 8)
