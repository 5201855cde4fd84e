"""The RTL's own format table (rtl/formats.py) against the golden models' (ml_dtypes based)."""
import pytest

from nmforge.golden import formats as F
from nmforge.golden.dot import accumulator_bits
from nmforge.rtl.formats import FLOAT_FORMATS, exact_sum_bits, float_format


@pytest.mark.parametrize("name", list(FLOAT_FORMATS))
def test_float_parameters_match_golden(name):
    rtl, gold = FLOAT_FORMATS[name], F.get_format(name)
    assert (rtl.width, rtl.exp_bits, rtl.man_bits, rtl.bias, rtl.sig_bits, rtl.lsb_exp) == (
        gold.width, gold.exp_bits, gold.man_bits, gold.bias, gold.sig_bits, gold.lsb_exp)
    assert (rtl.has_inf, rtl.has_nan) == (gold.has_inf, gold.has_nan)


@pytest.mark.parametrize("a", list(FLOAT_FORMATS))
@pytest.mark.parametrize("b", ["fp8_e4m3", "fp4_e2m1", "bf16"])
def test_accumulator_sizing_matches_golden(a, b):
    for products in (1, 3, 1 << 16):
        assert exact_sum_bits(float_format(a), float_format(b), products) == \
            accumulator_bits(a, b, products)


def test_unknown_format_names_the_allowed():
    with pytest.raises(ValueError, match="allowed: fp8_e4m3, fp8_e5m2"):
        float_format("fp8")
