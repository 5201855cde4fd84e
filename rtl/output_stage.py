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
from .pipeline import delay

LATENCY = 8
SPLIT = 17   # x's bits in the unsigned partial product (an 18 x 18 signed multiplier's operand)
MULTIPLIERS = 2   # DSP multipliers per stage: x * mult as two partial products


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
        m.d.sync += x.eq(self.acc + self.bias)
        valid, tag = delay(m, self.valid, 1, "valid1"), delay(m, self.tag, 1, "tag1")
        mult, shift = delay(m, self.mult, 1, "mult1"), delay(m, self.shift, 1, "shift1")
        # 2: the multipliers' operands in plain registers (fpga.dsp_pack moves them into the
        # MULT18X18Ds' input registers); 3: x * mult as two partial products, each one
        # MULT18X18D (x's low SPLIT bits unsigned, its high bits signed); 4: the products again in
        # the fabric, so the routing from the far multiplier sites has a cycle of its own;
        # 5: p = their sum (a wider product's carry chain right behind the multipliers was the
        # accelerator's critical path on ECP5)
        x_in, mult_in = Signal.like(x), Signal.like(mult)
        m.d.sync += [x_in.eq(x), mult_in.eq(mult)]
        low = Signal(SPLIT + PARAM_MULT_BITS, reset_less=True)
        high = Signal(signed(self.p_bits), reset_less=True)
        m.d.sync += [low.eq(x_in[:SPLIT] * mult_in), high.eq(x_in[SPLIT:].as_signed() * mult_in)]
        low_out, high_out = delay(m, low, 1, "low_out", reset_less=True), \
            delay(m, high, 1, "high_out", reset_less=True)
        p = Signal(signed(self.p_bits))
        m.d.sync += p.eq((high_out << SPLIT) + low_out)
        valid, tag = delay(m, valid, 4, "valid5"), delay(m, tag, 4, "tag5")
        x = delay(m, x, 4, "x5")
        # 6: t = 2p >> shift: its low act_width + 2 bits, and whether t fits in them (no bit of
        # 2p at or above shift + act_width + 1 differs from the sign: that mask is registered
        # beside p, so the adder and shifter that form it are off this stage's path)
        low_bits = self.act_width + 2
        doubled = Cat(Const(0, 1), p).as_signed()
        sign = p[self.p_bits - 1]
        t_low = Signal(signed(low_bits))
        t_fits, t_neg = Signal(), Signal()
        shift = delay(m, shift, 3, "shift4")
        above = Signal(len(doubled))
        m.d.sync += above.eq(Const((1 << len(doubled)) - 1, len(doubled))
                             << (shift + (low_bits - 1)))
        shift = delay(m, shift, 1, "shift5")
        kept = Cat(doubled[i] ^ sign for i in range(len(doubled))) & above
        m.d.sync += [t_low.eq((doubled >> shift)[:low_bits]), t_fits.eq(~kept.any()),
                     t_neg.eq(sign)]
        # 7: y = (t + 1) >> 1, saturated by t's sign where t did not fit
        rounded = Signal(signed(low_bits))
        rounded_fits, rounded_neg = Signal(), Signal()
        m.d.sync += [rounded.eq((t_low + 1) >> 1), rounded_fits.eq(t_fits),
                     rounded_neg.eq(t_neg)]
        valid, tag, x = delay(m, valid, 2, "valid7"), delay(m, tag, 2, "tag7"), delay(m, x, 2, "x7")
        # 8: clamp (act_width, or acc_width for raw), ReLU. `raw`, `relu` are constant per GEMM.
        requantized = Mux(rounded_fits, _clamp(rounded, self.act_width),
                          _limit(rounded_neg, self.act_width))
        y = Mux(self.raw, _clamp(x, self.acc_width), requantized)
        m.d.sync += [self.y.eq(Mux(self.relu & (y < 0), 0, y)), self.y_valid.eq(valid),
                     self.y_tag.eq(tag)]
        return m


class PassThroughStage(OutputStage):
    """The output stage of the non-integer kinds ("fp": FP32 result bits): y = acc unchanged
    (bias, mult, shift, raw and relu ignored), with OutputStage's ports and LATENCY so the drain
    is the same for every kind."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.y.eq(delay(m, self.acc, LATENCY, "y")),
                     self.y_valid.eq(delay(m, self.valid, LATENCY, "valid")),
                     self.y_tag.eq(delay(m, self.tag, LATENCY, "tag"))]
        return m
