"""The output stage of the int kinds (rtl.isa GEMM; golden.accel.requantize is its model).

Per element: x = acc + bias (exact); requantized y = clamp(floor((x * mult + 2^(shift-1)) /
2^shift)) to act_width bits (round half up; shift 0 adds nothing), or with `raw` clamp(x) to
acc_width bits; then max(y, 0) with `relu`. Fully pipelined: one element per cycle, `LATENCY`
cycles from `valid` to `y_valid`; `tag` travels with the element (addresses, enables).

The rounding shift is computed as y = floor((t + 1) / 2) with t = floor(2p / 2^shift) (equal to
floor((p + 2^(shift-1)) / 2^shift) for shift >= 1, and to p for shift 0), and of t only its low
act_width + 2 bits are formed, with a flag for "t does not fit in them" (a bit at or above
act_width + 1 differs from the sign): no full-width barrel shifter, rounding adder or
comparator (they took ~60 % of the stage's LUTs).
"""
from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import PARAM_BIAS_BITS, PARAM_MULT_BITS, PARAM_SHIFT_BITS

LATENCY = 6
SPLIT = 17   # x's bits in the unsigned partial product (an 18 x 18 signed multiplier's operand)


def _fits(value, width):
    """1 when the signed `value` is representable in `width` bits (its bits from width - 1 up
    all equal): an AND and an OR tree, no comparator."""
    top = value[width - 1:]
    return (top == 0) | (top == (1 << len(top)) - 1)


def _limit(negative, width):
    """The most negative `width`-bit value if `negative`, else the most positive."""
    return Mux(negative, -(1 << (width - 1)), (1 << (width - 1)) - 1)


def _clamp(value, width):
    """The signed `value` saturated to `width` bits."""
    return Mux(_fits(value, width), value[:width].as_signed(), _limit(value[len(value) - 1], width))


class OutputStage(wiring.Component):
    def __init__(self, acc_width, act_width, tag_width):
        self.acc_width, self.act_width = acc_width, act_width
        x_bits = max(acc_width, PARAM_BIAS_BITS) + 1
        self.x_bits = x_bits
        self.p_bits = x_bits + PARAM_MULT_BITS + 1
        super().__init__({
            "valid": In(1), "acc": In(signed(acc_width)), "bias": In(signed(PARAM_BIAS_BITS)),
            "mult": In(PARAM_MULT_BITS), "shift": In(PARAM_SHIFT_BITS), "relu": In(1),
            "raw": In(1), "tag": In(tag_width),
            "y_valid": Out(1), "y": Out(signed(acc_width)), "y_tag": Out(tag_width),
        })

    def elaborate(self, platform):
        m = Module()
        # 1: x = acc + bias
        x = Signal(signed(self.x_bits))
        v1, tag1, mult1, shift1 = Signal(), Signal.like(self.tag), Signal.like(self.mult), Signal.like(self.shift)
        m.d.sync += [x.eq(self.acc + self.bias), v1.eq(self.valid), tag1.eq(self.tag),
                     mult1.eq(self.mult), shift1.eq(self.shift)]
        # 2: x * mult as two partial products, each one MULT18X18D (x's low SPLIT bits unsigned,
        # its high bits signed); 2b: p = their sum (a wider product's carry chain right behind
        # the multipliers was the accelerator's critical path on ECP5)
        low, high = Signal(SPLIT + PARAM_MULT_BITS), Signal(signed(self.p_bits))
        v2a, tag2a, shift2a, x2a = Signal(), Signal.like(self.tag), Signal.like(self.shift), Signal.like(x)
        m.d.sync += [low.eq(x[:SPLIT] * mult1), high.eq(x[SPLIT:].as_signed() * mult1),
                     v2a.eq(v1), tag2a.eq(tag1), shift2a.eq(shift1), x2a.eq(x)]
        p = Signal(signed(self.p_bits))
        v2, tag2, shift2, x2 = Signal(), Signal.like(self.tag), Signal.like(self.shift), Signal.like(x)
        m.d.sync += [p.eq((high << SPLIT) + low), v2.eq(v2a), tag2.eq(tag2a), shift2.eq(shift2a),
                     x2.eq(x2a)]
        # 3: t = 2p >> shift: its low act_width + 2 bits, and whether t fits in them (no bit of
        # 2p at or above shift + act_width + 1 differs from the sign)
        low_bits = self.act_width + 2
        doubled = Cat(Const(0, 1), p).as_signed()
        sign = p[self.p_bits - 1]
        t_low = Signal(signed(low_bits))
        t_fits, t_neg = Signal(), Signal()
        v3, tag3, x3 = Signal(), Signal.like(self.tag), Signal.like(x)
        above = (Const((1 << len(doubled)) - 1, len(doubled)) << (shift2 + (low_bits - 1)))
        kept = Cat(doubled[i] ^ sign for i in range(len(doubled))) & above[:len(doubled)]
        m.d.sync += [t_low.eq((doubled >> shift2)[:low_bits]), t_fits.eq(~kept.any()),
                     t_neg.eq(sign), v3.eq(v2), tag3.eq(tag2), x3.eq(x2)]
        # 4: y = (t + 1) >> 1, saturated by t's sign where t did not fit
        rounded = Signal(signed(low_bits))
        rounded_fits, rounded_neg = Signal(), Signal()
        v4, tag4, x4 = Signal(), Signal.like(self.tag), Signal.like(x)
        m.d.sync += [rounded.eq((t_low + 1) >> 1), rounded_fits.eq(t_fits),
                     rounded_neg.eq(t_neg), v4.eq(v3), tag4.eq(tag3), x4.eq(x3)]
        # 5: clamp (act_width, or acc_width for raw), ReLU. `raw`, `relu` are constant per GEMM.
        requantized = Mux(rounded_fits, _clamp(rounded, self.act_width),
                          _limit(rounded_neg, self.act_width))
        y = Mux(self.raw, _clamp(x4, self.acc_width), requantized)
        m.d.sync += [self.y.eq(Mux(self.relu & (y < 0), 0, y)), self.y_valid.eq(v4),
                     self.y_tag.eq(tag4)]
        return m


class PassThroughStage(OutputStage):
    """The output stage of the non-integer kinds ("fp": FP32 result bits): y = acc unchanged
    (bias, mult, shift, raw and relu ignored), with OutputStage's ports and LATENCY so the drain
    is the same for every kind."""

    def elaborate(self, platform):
        m = Module()
        y, valid, tag = self.acc, self.valid, self.tag
        for _ in range(LATENCY):
            y_next, valid_next, tag_next = Signal.like(y), Signal(), Signal.like(tag)
            m.d.sync += [y_next.eq(y), valid_next.eq(valid), tag_next.eq(tag)]
            y, valid, tag = y_next, valid_next, tag_next
        m.d.comb += [self.y.eq(y), self.y_valid.eq(valid), self.y_tag.eq(tag)]
        return m
