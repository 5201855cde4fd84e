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

LATENCY = 3


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
        # 2: p = x * mult (or x itself for raw)
        p = Signal(signed(self.p_bits))
        v2, tag2, shift2 = Signal(), Signal.like(self.tag), Signal.like(self.shift)
        m.d.sync += [p.eq(x * mult1), v2.eq(v1), tag2.eq(tag1), shift2.eq(shift1)]
        x2 = Signal.like(x)
        m.d.sync += x2.eq(x)
        # 3: round half up (add 2^(shift-1), nothing for shift 0), shift, clamp, ReLU.
        # `raw` and `relu` are constant for a whole GEMM.
        shifted = Signal(signed(self.p_bits + 1))
        m.d.comb += shifted.eq((p + ((Const(1, 1) << shift2) >> 1)) >> shift2)
        y = Mux(self.raw, _clamp(x2, self.acc_width), _clamp(shifted, self.act_width))
        m.d.sync += [self.y.eq(Mux(self.relu & (y < 0), 0, y)), self.y_valid.eq(v2),
                     self.y_tag.eq(tag2)]
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
