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


@pytest.mark.parametrize("name", ["posit8_0", "posit16_1"])
def test_posit_parameters_match_golden(name):
    from nmforge.golden import posit as P
    from nmforge.golden.posit_mac import QUIRE_BITS
    from nmforge.rtl.formats import posit_format
    rtl, gold = posit_format(name), F.get_format(name)
    assert (rtl.n, rtl.es, rtl.quire_bits) == (gold.n, gold.es, QUIRE_BITS[name])
    assert rtl.max_fraction_bits == P.max_fraction_bits(gold.n, gold.es)
    assert rtl.maxpos_scale == P.maxpos_scale(gold.n, gold.es)


def test_mx_parameters_match_golden():
    from nmforge.golden import mx as X
    from nmforge.rtl import formats as R
    assert (R.MX_BLOCK_SIZE, R.E8M0_BIAS, R.E8M0_NAN) == (X.BLOCK_SIZE, X.SCALE_BIAS, X.SCALE_NAN)
    assert set(R.MX_ELEMENTS) == set(X.MX_FORMATS)
    for name, rtl in R.MX_ELEMENTS.items():
        gold = X.element_format(name)
        assert (rtl.kind, rtl.width, rtl.lsb_exp) == (gold.kind, gold.width, gold.lsb_exp)
        if rtl.kind == "float":
            assert rtl == FLOAT_FORMATS[gold.name]
