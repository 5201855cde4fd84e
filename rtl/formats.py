"""The number formats' bit-level parameters, as the hardware needs them (SPEC section 2).

The RTL keeps its own table instead of importing the golden models (data flows golden -> sim and
tests only); tests/test_rtl_formats.py checks every entry against golden.formats, which derives the
same facts from ml_dtypes and SoftPosit.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class FloatParams:
    """A sign / exponent / mantissa element format.

    `specials`: "ieee" (all-ones exponent = inf with a zero fraction, else NaN), "e4m3" (only
    S.1111.111 is NaN, no inf; OCP FP8 E4M3) or "none" (every code finite: FP6, FP4)."""

    name: str
    exp_bits: int
    man_bits: int
    specials: str

    @property
    def width(self):
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self):
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def sig_bits(self):
        """Significand bits, the hidden bit included."""
        return self.man_bits + 1

    @property
    def lsb_exp(self):
        """Exponent of the smallest subnormal's unit."""
        return 1 - self.bias - self.man_bits

    @property
    def has_inf(self):
        return self.specials == "ieee"

    @property
    def has_nan(self):
        return self.specials != "none"

    @property
    def max_magnitude_lsb(self):
        """The largest finite magnitude in units of 2^lsb_exp."""
        top = (1 << self.exp_bits) - 1          # largest biased exponent
        man = (1 << self.man_bits) - 1          # largest fraction
        if self.specials == "ieee":
            top -= 1
        elif self.specials == "e4m3":
            man -= 1
        return ((1 << self.man_bits) | man) << (top - 1)


FLOAT_FORMATS = {p.name: p for p in (
    FloatParams("fp8_e4m3", 4, 3, "e4m3"),
    FloatParams("fp8_e5m2", 5, 2, "ieee"),
    FloatParams("fp6_e3m2", 3, 2, "none"),
    FloatParams("fp6_e2m3", 2, 3, "none"),
    FloatParams("fp4_e2m1", 2, 1, "none"),
    FloatParams("bf16", 8, 7, "ieee"),
)}


def float_format(name):
    """The FloatParams of `name`; ValueError naming the allowed formats."""
    if name not in FLOAT_FORMATS:
        raise ValueError(f"format {name!r} is not supported; allowed: {', '.join(FLOAT_FORMATS)}")
    return FLOAT_FORMATS[name]


def exact_sum_bits(fa, fb, products):
    """Signed width of a fixed-point accumulator (LSB 2^(fa.lsb_exp + fb.lsb_exp)) that holds any
    sum of `products` products of fa x fb exactly."""
    return (products * fa.max_magnitude_lsb * fb.max_magnitude_lsb).bit_length() + 1
