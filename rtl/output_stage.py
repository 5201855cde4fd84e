"""The output stage of the int kinds (rtl.isa GEMM; golden.accel.requantize is its model).

Per element: x = acc + bias (exact); requantized y = clamp(floor((x * mult + 2^(shift-1)) /
2^shift)) to act_width bits (round half up; shift 0 adds nothing), or with `raw` clamp(x) to
acc_width bits; then max(y, 0) with `relu`. Fully pipelined: one element per cycle, `LATENCY`
cycles from `valid` to `y_valid`; `tag` travels with the element (addresses, enables).
"""
from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import PARAM_BIAS_BITS, PARAM_MULT_BITS, PARAM_SHIFT_BITS

LATENCY = 5


def _clamp(value, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


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
        # 2: p = x * mult (or x itself for raw); the rounding term 2^(shift-1) (0 for shift 0)
        p = Signal(signed(self.p_bits))
        v2, tag2, shift2 = Signal(), Signal.like(self.tag), Signal.like(self.shift)
        half = Signal(signed(self.p_bits + 1))
        x2 = Signal.like(x)
        m.d.sync += [p.eq(x * mult1), v2.eq(v1), tag2.eq(tag1), shift2.eq(shift1), x2.eq(x),
                     half.eq((Const(1, 1) << shift1) >> 1)]
        # 3: round half up. 4: shift. 5: clamp, ReLU. (One carry chain, the barrel shifter and
        # the clamp each get their own cycle: together they were the accelerator's critical path
        # on ECP5, 17.7 ns.) `raw` and `relu` are constant for a whole GEMM.
        rounded = Signal(signed(self.p_bits + 1))
        v3, tag3, shift3, x3 = Signal(), Signal.like(self.tag), Signal.like(self.shift), Signal.like(x)
        m.d.sync += [rounded.eq(p + half), v3.eq(v2), tag3.eq(tag2), shift3.eq(shift2), x3.eq(x2)]
        shifted = Signal(signed(self.p_bits + 1))
        v4, tag4, x4 = Signal(), Signal.like(self.tag), Signal.like(x)
        m.d.sync += [shifted.eq(rounded >> shift3), v4.eq(v3), tag4.eq(tag3), x4.eq(x3)]
        y = Mux(self.raw, _clamp(x4, self.acc_width), _clamp(shifted, self.act_width))
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
