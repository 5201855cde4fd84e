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
    kind = "float"

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
    return _lookup(FLOAT_FORMATS, name, "format")


def exact_sum_bits(fa, fb, products):
    """Signed width of a fixed-point accumulator (LSB 2^(fa.lsb_exp + fb.lsb_exp)) that holds any
    sum of `products` products of fa x fb exactly."""
    return (products * fa.max_magnitude_lsb * fb.max_magnitude_lsb).bit_length() + 1


@dataclasses.dataclass(frozen=True)
class ScaledIntParams:
    """A two's-complement integer element times 2^lsb_exp (OCP MX INT8: int8 * 2^-6)."""

    name: str
    width: int
    lsb_exp: int
    kind = "int"


@dataclasses.dataclass(frozen=True)
class PositParams:
    """posit(n, es) and the quire the hardware sums its products in (SoftPosit's sizes)."""

    name: str
    n: int
    es: int
    quire_bits: int

    @property
    def max_fraction_bits(self):
        """Most fraction bits a code carries (the shortest regime is 2 bits)."""
        return max(self.n - 3 - self.es, 0)

    @property
    def maxpos_scale(self):
        """log2 of maxpos; minpos is 2^-maxpos_scale."""
        return (self.n - 2) << self.es


POSIT_FORMATS = {p.name: p for p in (PositParams("posit8_0", 8, 0, 32),
                                     PositParams("posit16_1", 16, 1, 128))}

# OCP MX v1.0: 32 elements share one E8M0 scale 2^(e - 127); code 0xFF is NaN.
MX_BLOCK_SIZE = 32
E8M0_BIAS = 127
E8M0_NAN = 0xFF
MX_ELEMENTS = {
    "mxfp8_e4m3": FLOAT_FORMATS["fp8_e4m3"], "mxfp8_e5m2": FLOAT_FORMATS["fp8_e5m2"],
    "mxfp6_e3m2": FLOAT_FORMATS["fp6_e3m2"], "mxfp6_e2m3": FLOAT_FORMATS["fp6_e2m3"],
    "mxfp4": FLOAT_FORMATS["fp4_e2m1"], "mxint8": ScaledIntParams("mxint8", 8, -6),
}


def _lookup(table, name, what):
    if name not in table:
        raise ValueError(f"{what} {name!r} is not supported; allowed: {', '.join(table)}")
    return table[name]


def posit_format(name):
    """The PositParams of `name`; ValueError naming the allowed formats."""
    return _lookup(POSIT_FORMATS, name, "posit format")


def mx_element(name):
    """The element parameters of MX format `name`; ValueError naming the allowed formats."""
    return _lookup(MX_ELEMENTS, name, "MX format")
