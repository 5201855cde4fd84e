"""Bit-exact number formats (SPEC section 2): one registry of format descriptors by name.

Every format maps n-bit codes (unsigned integers 0 .. 2^n - 1) to exact values:

- ``decode(bits) -> float64`` (every value of every format here is exact in float64; NaN for NaN
  and NaR codes, +-inf for infinities),
- ``encode(values) -> bits`` (uint8, or uint16 for 16-bit formats),
- ``exact_value(bits) -> (mantissa, exponent, special)``: value = mantissa * 2^exponent with a
  signed int64 mantissa, in the fixed-width form a datapath unpacks to (see `exact_value`).

The float encodings are those of ``ml_dtypes`` (float8_e4m3fn, float8_e5m2, float6_e3m2fn,
float6_e2m3fn, float4_e2m1fn, bfloat16, float8_e8m0fnu): decode is ml_dtypes' value of the code,
and encode is ml_dtypes' rounding (round to nearest, ties to even; E4M3 overflows to NaN, E5M2
and bf16 to inf, FP6/FP4 saturate to +-max and map NaN to a zero; E8M0 rounds to the nearest
power of two with ties upward and maps 0, negatives, inf and NaN to NaN = 0xFF). No code table is
written here: parameters come from ``ml_dtypes.finfo`` and special codes from decoding every code.

One deliberate difference: ml_dtypes 0.6.0's ``ndarray.astype`` from float64 rounds to float32
first and then to the target (double rounding; e.g. 1 + 2^-4 + 2^-40 becomes E4M3 1.0 instead of
1.125). `encode` rounds float64 inputs exactly once: it first rounds to float32 with round-to-odd
(which keeps the sticky information, since float32 has at least 2 more significand bits than every
target and covers their exponent ranges) and lets ml_dtypes round that float32 to the target.
For float32 inputs this is exactly ml_dtypes' cast.

Integer formats are two's complement (``intN``) or plain binary (``uintN``); ``mxint8`` is the
OCP MX v1.0 INT8 element: an 8-bit two's-complement integer with an implicit scale of 2^-6
(values -2 .. 127/64). Posits: ``posit8_0`` and ``posit16_1`` through SoftPosit, ``posit4_1``
through `nmforge.golden.posit`; NaR decodes to NaN and NaN/inf encode to NaR.
"""

import math

import ml_dtypes
import numpy as np

from . import posit as _posit
from .ints import from_unsigned, int_array, int_range, to_unsigned

# Special-value classes returned by exact_value / exact_product (int8 arrays).
FINITE, NAN, POS_INF, NEG_INF = 0, 1, 2, 3


def _uint_dtype(width):
    return np.uint8 if width <= 8 else np.uint16


def _float_input(values):
    """`values` as a float64 or float32 ndarray (float32 kept as is, everything else to float64)."""
    arr = np.asarray(values)
    return arr if arr.dtype == np.float32 else arr.astype(np.float64)


def round_to_odd_float32(x):
    """Round float64 values to float32 with round-to-odd (truncate, then set the LSB if inexact).

    Rounding to odd at float32 and then to any format with at most 22 significand bits and an
    exponent range inside float32's gives the same result as rounding the float64 value directly
    (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using
    rounding to odd", IEEE TC 2008); infinities and NaN pass through.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
    back = f.astype(np.float64)
    inexact = np.isfinite(x) & (back != x)
    toward_zero = inexact & (np.abs(back) > np.abs(x))
    f = np.where(toward_zero, np.nextafter(f, np.float32(0)), f).astype(np.float32)
    bits = f.view(np.uint32) | inexact.astype(np.uint32)
    return bits.view(np.float32)


class Format:
    """A number format: name, bit width and kind ("int", "float", "scale" or "posit").

    `lsb_exp` and `max_exp` bound the exponents `exact_value` returns for finite codes, and
    `sig_bits` bounds |mantissa| < 2^sig_bits, so a product of two formats is an integer of at most
    sig_bits_a + sig_bits_b bits times 2^(exp_a + exp_b).
    """

    kind = None

    def __init__(self, name, width, description):
        self.name = name
        self.width = width
        self.description = description

    def __repr__(self):
        return f"<Format {self.name}: {self.description}>"

    @property
    def num_codes(self):
        return 1 << self.width

    def codes(self):
        """Every code of the format, 0 .. 2^width - 1, as the format's unsigned dtype."""
        return np.arange(self.num_codes, dtype=_uint_dtype(self.width))

    def check_bits(self, bits):
        """`bits` as an int64 ndarray, ValueError if any code is outside 0 .. 2^width - 1."""
        arr = int_array(bits, "bits").astype(np.int64)
        bad = (arr < 0) | (arr >= self.num_codes)
        if bad.any():
            raise ValueError(f"code {arr[bad].flat[0]} out of range for {self.name} "
                             f"({self.width} bits: 0..{self.num_codes - 1})")
        return arr

    def _out(self, arr):
        return arr.astype(_uint_dtype(self.width))

    @property
    def max_finite(self):
        """Largest finite value of the format."""
        vals = self.decode(self.codes())
        return float(np.max(vals[np.isfinite(vals)]))

    def decode(self, bits):
        raise NotImplementedError

    def encode(self, values):
        raise NotImplementedError

    def exact_value(self, bits):
        raise NotImplementedError


class IntFormat(Format):
    """Two's-complement (signed) or plain binary (unsigned) integers, times 2^scale_exp."""

    kind = "int"

    def __init__(self, name, width, signed, scale_exp=0, description=None):
        desc = description or f"{'signed' if signed else 'unsigned'} {width}-bit integer"
        super().__init__(name, width, desc)
        self.signed = signed
        self.scale_exp = scale_exp
        self.lo, self.hi = int_range(width, signed)
        self.sig_bits = width  # |-2^(w-1)| and 2^w - 1 both need w bits of magnitude
        self.lsb_exp = self.max_exp = scale_exp

    def _ints(self, bits):
        bits = self.check_bits(bits)
        return from_unsigned(bits, self.width) if self.signed else bits

    def decode(self, bits):
        return np.ldexp(self._ints(bits).astype(np.float64), self.scale_exp)

    def encode(self, values):
        """Integer values (after removing 2^scale_exp) in range -> codes; ValueError otherwise.

        For `mxint8` (scale_exp = -6) values are first rounded to a multiple of 2^-6 with ties to
        even and saturated to -2 .. 127/64 (the MX conversion clamps to the element range).
        """
        arr = np.asarray(values)
        if self.scale_exp:
            x = np.asarray(arr, dtype=np.float64)
            if np.isnan(x).any():
                raise ValueError(f"{self.name} has no NaN")
            ints = np.clip(np.rint(np.ldexp(x, -self.scale_exp)), self.lo, self.hi).astype(np.int64)
        else:
            if arr.dtype.kind == "f":
                if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                    raise ValueError(f"{self.name} values must be integers")
                arr = arr.astype(np.int64)
            ints = int_array(arr, "values").astype(np.int64)
            bad = (ints < self.lo) | (ints > self.hi)
            if bad.any():
                raise ValueError(f"value {ints[bad].flat[0]} outside the {self.name} range "
                                 f"[{self.lo}, {self.hi}]")
        bits = to_unsigned(ints, self.width) if self.signed else ints
        return self._out(bits)

    def exact_value(self, bits):
        mant = self._ints(bits)
        return (mant, np.full(mant.shape, self.scale_exp, dtype=np.int64),
                np.zeros(mant.shape, dtype=np.int8))


class _TableFormat(Format):
    """Formats whose decode of every code is computed once (by ml_dtypes or SoftPosit)."""

    def _build_tables(self):
        raise NotImplementedError

    def _tables(self):
        if not hasattr(self, "_tab"):
            self._tab = self._build_tables()
        return self._tab

    def decode(self, bits):
        return self._tables()["value"][self.check_bits(bits)]

    def exact_value(self, bits):
        tab = self._tables()
        idx = self.check_bits(bits)
        return tab["mant"][idx], tab["exp"][idx], tab["special"][idx]

    @staticmethod
    def _special_of(values):
        special = np.zeros(values.shape, dtype=np.int8)
        special[np.isnan(values)] = NAN
        special[np.isposinf(values)] = POS_INF
        special[np.isneginf(values)] = NEG_INF
        return special


class FloatFormat(_TableFormat):
    """A sign / exponent / mantissa float whose encoding is an ml_dtypes dtype."""

    kind = "float"

    def __init__(self, name, dtype, description):
        info = ml_dtypes.finfo(dtype)
        super().__init__(name, int(info.bits), description)
        self.dtype = np.dtype(dtype)
        self.exp_bits = int(info.nexp)
        self.man_bits = int(info.nmant)
        self.bias = 1 - int(info.minexp)  # minexp is the exponent of the smallest normal
        self.sig_bits = self.man_bits + 1
        self.lsb_exp = 1 - self.bias - self.man_bits  # exponent of the smallest subnormal
        self.max_exp = (1 << self.exp_bits) - 1 - self.bias - self.man_bits

    def _build_tables(self):
        codes = self.codes()
        with np.errstate(invalid="ignore"):
            value = codes.view(self.dtype).astype(np.float64)
        special = self._special_of(value)
        c = codes.astype(np.int64)
        sign = (c >> (self.width - 1)) & 1
        biased = (c >> self.man_bits) & ((1 << self.exp_bits) - 1)
        frac = c & ((1 << self.man_bits) - 1)
        mant = np.where(biased == 0, frac, frac | (1 << self.man_bits))
        exp = np.where(biased == 0, 1, biased) - self.bias - self.man_bits
        mant = np.where(sign == 1, -mant, mant)
        mant[special != FINITE] = 0
        exp[special != FINITE] = self.lsb_exp
        tab = {"value": value, "mant": mant.astype(np.int64), "exp": exp.astype(np.int64),
               "special": special}
        for arr in tab.values():
            arr.setflags(write=False)
        return tab

    @property
    def has_inf(self):
        return bool(np.isinf(self._tables()["value"]).any())

    @property
    def has_nan(self):
        return bool(np.isnan(self._tables()["value"]).any())

    def encode(self, values):
        """Round to nearest, ties to even, exactly once; overflow and NaN as ml_dtypes defines."""
        x = _float_input(values)
        f32 = x if x.dtype == np.float32 else round_to_odd_float32(x)
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.asarray(f32).astype(self.dtype)
        raw = out.view(np.uint16 if self.width > 8 else np.uint8)
        return self._out(raw & (self.num_codes - 1))


class ScaleFormat(FloatFormat):
    """E8M0: an unsigned power of two 2^(e-127), e = 0..254; 0xFF is NaN (no zero, no sign)."""

    kind = "scale"

    def __init__(self, name, dtype, description):
        super().__init__(name, dtype, description)
        self.bias = 127
        self.sig_bits = 1
        self.lsb_exp, self.max_exp = -127, 127

    def _build_tables(self):
        codes = self.codes()
        with np.errstate(invalid="ignore"):
            value = codes.view(self.dtype).astype(np.float64)
        special = self._special_of(value)
        exp = codes.astype(np.int64) - self.bias
        mant = np.ones(codes.shape, dtype=np.int64)
        mant[special != FINITE] = 0
        exp[special != FINITE] = self.lsb_exp
        tab = {"value": value, "mant": mant, "exp": exp, "special": special}
        for arr in tab.values():
            arr.setflags(write=False)
        return tab

    def encode(self, values):
        """Nearest power of two as ml_dtypes rounds it (ties upward); <= 0, inf and NaN give 0xFF."""
        return super().encode(values)


class PositFormat(_TableFormat):
    """posit(n, es); SoftPosit decodes and encodes (8, 0) and (16, 1), `golden.posit` the rest."""

    kind = "posit"

    def __init__(self, name, n, es, description):
        super().__init__(name, n, description)
        self.n, self.es = n, es
        self.frac_bits = _posit.max_fraction_bits(n, es)
        self.sig_bits = self.frac_bits + 1
        self.lsb_exp = -_posit.maxpos_scale(n, es) - self.frac_bits
        self.max_exp = _posit.maxpos_scale(n, es) - self.frac_bits
        self.nar = 1 << (n - 1)

    def _softposit(self):
        """(decode one code, encode one float) through SoftPosit, or None when it has no binding."""
        import softposit as sp  # imported lazily: only the posit formats need it

        if (self.n, self.es) == (8, 0):
            ctype, to_double, from_double = sp.posit8_t, sp.convertP8ToDouble, sp.convertDoubleToP8
        elif (self.n, self.es) == (16, 1):
            ctype, to_double, from_double = sp.posit16_t, sp.convertP16ToDouble, sp.convertDoubleToP16
        else:
            return None

        def dec(code):
            p = ctype()
            p.v = int(code)
            return to_double(p)

        def enc(x):
            return from_double(float(x)).v

        return dec, enc

    def _build_tables(self):
        mant, exp, nar, value = _posit.tables(self.n, self.es)
        sp = self._softposit()
        if sp is not None:
            dec = sp[0]
            value = np.array([dec(c) for c in range(self.num_codes)], dtype=np.float64)
            value[self.nar] = np.nan  # SoftPosit returns inf for NaR
        special = np.where(nar, NAN, FINITE).astype(np.int8)
        tab = {"value": value, "mant": mant, "exp": exp, "special": special}
        for arr in tab.values():
            arr.setflags(write=False)
        return tab

    def encode(self, values):
        """Posit rounding (round to nearest even on the bit string, never to 0 or NaR)."""
        x = np.asarray(values, dtype=np.float64)
        sp = self._softposit()
        if sp is not None:
            enc = sp[1]
            out = np.array([enc(v) if math.isfinite(v) else self.nar for v in x.ravel().tolist()],
                           dtype=np.int64)
        else:
            out = np.array([_posit.round_float(self.n, self.es, v) for v in x.ravel().tolist()],
                           dtype=np.int64)
        return self._out(out.reshape(x.shape))


def _build_registry():
    fmts = []
    for w in (2, 4, 8, 16):
        fmts.append(IntFormat(f"int{w}", w, signed=True))
    for w in (2, 4, 8, 16):
        fmts.append(IntFormat(f"uint{w}", w, signed=False))
    fmts.append(IntFormat("mxint8", 8, signed=True, scale_exp=-6,
                          description="OCP MX INT8 element: int8 * 2^-6"))
    fmts += [
        FloatFormat("fp8_e4m3", ml_dtypes.float8_e4m3fn, "OCP FP8 E4M3: no inf, NaN = S.1111.111, max 448"),
        FloatFormat("fp8_e5m2", ml_dtypes.float8_e5m2, "OCP FP8 E5M2: IEEE-like, inf and NaN, max 57344"),
        FloatFormat("fp6_e3m2", ml_dtypes.float6_e3m2fn, "OCP MX FP6 E3M2: no inf/NaN, max 28"),
        FloatFormat("fp6_e2m3", ml_dtypes.float6_e2m3fn, "OCP MX FP6 E2M3: no inf/NaN, max 7.5"),
        FloatFormat("fp4_e2m1", ml_dtypes.float4_e2m1fn, "OCP MX FP4 E2M1: no inf/NaN, max 6"),
        FloatFormat("bf16", ml_dtypes.bfloat16, "bfloat16 E8M7: IEEE-like"),
        ScaleFormat("e8m0", ml_dtypes.float8_e8m0fnu, "E8M0 scale: 2^(e-127), 0xFF = NaN"),
        PositFormat("posit4_1", 4, 1, "posit(4, 1)"),
        PositFormat("posit8_0", 8, 0, "posit(8, 0)"),
        PositFormat("posit16_1", 16, 1, "posit(16, 1)"),
    ]
    return {f.name: f for f in fmts}


_REGISTRY = _build_registry()


def format_names():
    """Names of every registered format."""
    return list(_REGISTRY)


def get_format(name):
    """The format descriptor for `name` (a Format passes through); ValueError naming the allowed ones."""
    if isinstance(name, Format):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown format {name!r}; allowed: {', '.join(_REGISTRY)}") from None


def decode(fmt, bits):
    """Exact float64 values of `bits` in format `fmt`."""
    return get_format(fmt).decode(bits)


def encode(fmt, values):
    """Codes of `values` in format `fmt` (see the module docstring for the rounding)."""
    return get_format(fmt).encode(values)


def exact_value(fmt, bits):
    """(mantissa int64, exponent int64, special int8) with value = mantissa * 2^exponent.

    The decomposition is the one a datapath unpacks to, not a normalised one:
    - float: normal codes give mantissa +-(2^man_bits + fraction) and exponent
      biased - bias - man_bits; subnormals and zeros give +-fraction and 1 - bias - man_bits;
    - int: the integer and exponent 0 (-6 for mxint8); e8m0: 1 and e - 127;
    - posit: +-(2^F + fraction << (F - f)) with F = the format's most fraction bits.
    Non-finite codes (special NAN / POS_INF / NEG_INF) have mantissa 0 and exponent `lsb_exp`.
    Zero carries no sign (mantissa 0).
    """
    return get_format(fmt).exact_value(bits)


def exact_product(fmt_a, bits_a, fmt_b, bits_b):
    """Exact products of code pairs: (mantissa int64, exponent int64, special int8), broadcast.

    mantissa = mant_a * mant_b and exponent = exp_a + exp_b (from `exact_value`), so every finite
    product is exact. special: NAN if either operand is NaN/NaR or an infinity meets a zero;
    +-inf (sign = product of the signs) if an infinity meets a non-zero; else FINITE. Non-finite
    products have mantissa 0 and exponent lsb_exp_a + lsb_exp_b.
    """
    fa, fb = get_format(fmt_a), get_format(fmt_b)
    if fa.sig_bits + fb.sig_bits > 62:
        raise ValueError(f"{fa.name} x {fb.name} products do not fit int64")
    ma, ea, sa = fa.exact_value(bits_a)
    mb, eb, sb = fb.exact_value(bits_b)
    ma, ea, sa, mb, eb, sb = np.broadcast_arrays(ma, ea, sa, mb, eb, sb)
    mant = ma * mb
    exp = ea + eb
    special = np.zeros(mant.shape, dtype=np.int8)
    inf_a = (sa == POS_INF) | (sa == NEG_INF)
    inf_b = (sb == POS_INF) | (sb == NEG_INF)
    neg_a = (sa == NEG_INF) | ((sa == FINITE) & (ma < 0))
    neg_b = (sb == NEG_INF) | ((sb == FINITE) & (mb < 0))
    any_inf = inf_a | inf_b
    zero_meets_inf = (inf_a & (sb == FINITE) & (mb == 0)) | (inf_b & (sa == FINITE) & (ma == 0))
    special[any_inf & ~(neg_a ^ neg_b)] = POS_INF
    special[any_inf & (neg_a ^ neg_b)] = NEG_INF
    special[zero_meets_inf | (sa == NAN) | (sb == NAN)] = NAN
    nonfinite = special != FINITE
    mant = np.where(nonfinite, 0, mant)
    exp = np.where(nonfinite, fa.lsb_exp + fb.lsb_exp, exp)
    return mant.astype(np.int64), exp.astype(np.int64), special
