"""The `int` PE kind: N signed integer products per beat, summed, into a wrap/saturate accumulator.

Pipeline from the `a`/`w` ports:
  1 multiplier input registers
  2 products (one multiplier each)
  3 product retiming registers
  4.. adder tree, one register per level (ceil(log2 N) levels)
  last: accumulate; on a `last` beat the final sum goes to `result` and the accumulator restarts.
Stages 1 and 3 exist for FPGA timing: DSP blocks sit in columns away from the logic, so the
registers on both sides of a multiplier let the placer keep the long routes register-to-register.
"""
from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .pipeline import delay

OVERFLOW_POLICIES = ("wrap", "saturate")


class IntMac(wiring.Component):
    """Accumulates, per beat, sum over i < N of a[i] * w[i] on `acc_width` bits.

    `overflow` pulses on each accumulation whose exact sum falls outside the signed
    `acc_width` range; the policy then wraps or saturates. Latency: `latency` cycles from a
    beat at `a`/`w` to `result`/`result_valid` (for the beat marked `last`).
    """

    def __init__(self, n, act_width, weight_width, acc_width, overflow="wrap"):
        assert overflow in OVERFLOW_POLICIES
        self.n, self.acc_width = n, acc_width
        self.act_width, self.weight_width = act_width, weight_width
        self.saturate = overflow == "saturate"
        self.tree_levels = ceil_log2(n)
        self.latency = 4 + self.tree_levels
        super().__init__({
            "a": In(data.ArrayLayout(signed(act_width), n)),
            "w": In(data.ArrayLayout(signed(weight_width), n)),
            "valid": In(1), "last": In(1),
            "result": Out(signed(acc_width)), "result_valid": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # The multiplier inputs keep the synchronous reset: reset-less, synth_ice40 -dsp packs
        # two multipliers per SB_MAC16 and computes wrong products (seen in gate-level
        # simulation); fpga/dsp_pack.py carries the reset into the ECP5 DSP input registers.
        # Products and sums are reset-less: with a reset, the ECP5 placer takes the product
        # flip-flops far from the DSP outputs (8x8 2:4 array: 113 vs 152 MHz, measured).
        a, w = delay(m, self.a, 1, "a"), delay(m, self.w, 1, "w")
        prod_width = self.act_width + self.weight_width
        products = Signal(data.ArrayLayout(signed(prod_width), self.n), reset_less=True)
        m.d.sync += [products[i].eq(a[i] * w[i]) for i in range(self.n)]
        retimed = delay(m, products, 1, "retimed", reset_less=True)
        terms = [retimed[i] for i in range(self.n)]
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(prod_width + level + 1), name=f"sum{level}_{i}", reset_less=True)
                     for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        group_sum = terms[0]
        valid = delay(m, self.valid, 3 + self.tree_levels, "valid")
        last = delay(m, self.valid & self.last, 3 + self.tree_levels, "last")

        acc = Signal(signed(self.acc_width))
        exact = Signal(signed(max(self.acc_width, len(group_sum)) + 1))
        m.d.comb += exact.eq(acc + group_sum)
        top = exact[self.acc_width - 1:]
        out_of_range = ~(top.all() | ~top.any())
        lo, hi = -(1 << (self.acc_width - 1)), (1 << (self.acc_width - 1)) - 1
        next_acc = exact[:self.acc_width]
        if self.saturate:
            next_acc = Mux(out_of_range, Mux(exact[-1], lo, hi), next_acc)
        with m.If(last):
            m.d.sync += [acc.eq(0), self.result.eq(next_acc)]
        with m.Elif(valid):
            m.d.sync += acc.eq(next_acc)
        m.d.sync += [self.result_valid.eq(last), self.overflow.eq(valid & out_of_range)]
        return m
