"""The `bitserial` PE kind: one weight bit-plane per beat, shift-accumulate; the weight precision
(1 .. weight_width bits) is a run-time choice of the host.

Ports (rtl.pe contract): `a` = N signed `act_width`-bit activations, `w` = N weight bits
(unsigned(1): bit `plane` of each kept weight), `w_side` = the column's per-beat struct
{plane: unsigned(max(1, ceil(log2 weight_width))), msb: 1}, `valid`, `last`; `result` = signed
`acc_width`.

Each valid beat adds v = sum_i a[i] * w[i] * 2^plane, negated when msb = 1 (the
two's-complement sign plane), to the accumulator (rtl.accumulator: wrap or saturate, with the
overflow pulse). A P-bit weight is sent as P beats of its N:M group, planes 0 .. P-1, the last
with msb = 1, the same activations and indices on each; P may change from one GEMM (or tile)
to the next without anything else changing: that is the run-time precision. Golden model:
golden.bitserial (beat-space operands, golden.gemm's accumulation).

No multiplier: the products are AND gates (a[i] when the bit is set), summed by an adder tree,
shifted by the plane index (a barrel shifter), and the negation is folded into the accumulator's
adder (ones' complement of the addend plus a carry in).

`overflow` also pulses for a malformed plane sequence (the beat is still accumulated as given):
a plane >= weight_width, a plane other than the expected one (0 at a tile's start and after an
msb beat, else the previous plane + 1), or a `last` beat without msb.

Pipeline from `a`/`w`/`w_side` (L = ceil(log2 N)):
  1 input registers, the plane sequence check
  2 gated activations (a[i] if w[i] else 0)
  3 .. 2+L adder tree
  +1 shift by the plane, ones' complement when msb
  +1 accumulate (rtl.accumulator.accumulate, carry in = msb)
"""
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import accumulate
from .mac_int import OVERFLOW_POLICIES
from .pipeline import delay

MAX_WEIGHT_WIDTH = 16


def plane_bits(weight_width):
    return max(1, ceil_log2(weight_width))


def side_layout(weight_width):
    """The `w_side` struct of one column and beat."""
    return data.StructLayout({"plane": unsigned(plane_bits(weight_width)), "msb": unsigned(1)})


class BitserialMac(wiring.Component):
    """acc += (-1)^msb * 2^plane * sum_i a[i] * w[i] per beat, on `acc_width` bits."""

    def __init__(self, n, act_width, weight_width, acc_width, overflow="wrap"):
        assert overflow in OVERFLOW_POLICIES
        if not 1 <= weight_width <= MAX_WEIGHT_WIDTH:
            raise ValueError(f"weight_width {weight_width}; allowed: 1..{MAX_WEIGHT_WIDTH}")
        self.n, self.act_width, self.weight_width = n, act_width, weight_width
        self.acc_width, self.saturate = acc_width, overflow == "saturate"
        self.plane_bits = plane_bits(weight_width)
        self.tree_levels = ceil_log2(n)
        self.latency = 2 + self.tree_levels + 2
        super().__init__({
            "a": In(data.ArrayLayout(signed(act_width), n)),
            "w": In(data.ArrayLayout(unsigned(1), n)),
            "w_side": In(side_layout(weight_width)),
            "valid": In(1), "last": In(1),
            "result": Out(signed(acc_width)), "result_valid": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        # 1: input registers; the plane sequence check.
        a = delay(m, self.a, 1, "a_in", reset_less=True)
        w = delay(m, self.w, 1, "w_in", reset_less=True)
        side = delay(m, self.w_side, 1, "side_in", reset_less=True)
        valid = delay(m, self.valid, 1, "valid_in")
        last = delay(m, self.valid & self.last, 1, "last_in")
        expected = Signal(self.plane_bits + 1, name="expected_plane")
        with m.If(valid):
            m.d.sync += expected.eq(Mux(side.msb | last, 0, side.plane + 1))
        bad = (side.plane != expected) | (last & ~side.msb)
        if (1 << self.plane_bits) > self.weight_width:
            bad = bad | (side.plane >= self.weight_width)
        bad = valid & bad

        # 2: gated activations; 3..2+L: adder tree.
        terms = []
        for i in range(n):
            term = Signal(signed(self.act_width), name=f"gated{i}", reset_less=True)
            m.d.sync += term.eq(Mux(w[i], a[i], 0))
            terms.append(term)
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(self.act_width + level + 1), name=f"sum{level}_{i}",
                            reset_less=True) for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        beat = terms[0]
        cycles = 1 + self.tree_levels
        plane = delay(m, side.plane, cycles, "plane", reset_less=True)
        msb = delay(m, side.msb, cycles, "msb", reset_less=True)

        # Shift by the plane; ones' complement for the sign plane (+1 as the carry in).
        top = (1 << self.plane_bits) - 1
        addend = Signal(signed(len(beat) + top), name="addend", reset_less=True)
        m.d.sync += addend.eq(Mux(msb, ~(beat << plane), beat << plane))
        carry = delay(m, msb, 1, "carry", reset_less=True)
        s_valid = delay(m, valid, cycles + 1, "valid_s")
        s_last = delay(m, last, cycles + 1, "last_s")
        s_bad = delay(m, bad, cycles + 1, "bad_s")

        acc_overflow = Signal(name="acc_overflow")
        accumulate(m, addend, s_valid, s_last, self.result, self.result_valid, acc_overflow,
                   saturate=self.saturate, carry_in=carry)
        bad_pulse = Signal(name="bad_pulse")
        m.d.sync += bad_pulse.eq(s_bad)
        m.d.comb += self.overflow.eq(acc_overflow | bad_pulse)
        return m
