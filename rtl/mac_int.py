"""The `int` PE kind: N signed integer products per beat, summed, into a wrap/saturate accumulator.

Pipeline from the `a`/`w` ports:
  1 multiplier input registers        \
  2 products                           } one `Multiplier` submodule per product
  3 product retiming registers        /
  4.. adder tree, one register per level (ceil(log2 N) levels)
  last: accumulate; on a `last` beat the final sum goes to `result` and the accumulator restarts.
Stages 1 and 3 exist for FPGA timing: DSP blocks sit in columns away from the logic, so the
registers on both sides of a multiplier let the placer keep the long routes register-to-register
(on ECP5 the flow moves stages 1 and 2 into the MULT18X18D: fpga/dsp_pack.py).
"""
from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import accumulate
from .pipeline import delay

OVERFLOW_POLICIES = ("wrap", "saturate")


class Multiplier(wiring.Component):
    """product = a * w, signed: input registers, the multiply's output register, and a retiming
    register that loads only when `load` is high: the caller's valid for the beat whose product
    is in the multiply's output register (its `valid` delayed 2 cycles; the caller keeps that
    pipeline, shared by all its multipliers and continued for its own stages). Latency 3.

    The clock enable on the retiming register is for Yosys' iCE40 DSP mapping: without it,
    ice40_dsp pulls both product registers into the SB_MAC16 and then the adder behind two
    multipliers, keeps one block for the two products and drops the other one (wrong sums in
    gate-level simulation, tests/test_fpga_gate_level.py); a register with an enable stays in
    the fabric, so each multiplier gets its own block. The input registers keep the synchronous
    reset (fpga/dsp_pack.py carries it into the ECP5 DSP input registers); the product registers
    are reset-less: with a reset, the ECP5 placer takes them far from the DSP outputs (8x8 2:4
    array: 113-115 MHz instead of 152, measured).
    """

    latency = 3
    load_delay = 2  # `load` is the caller's valid delayed by this many cycles

    def __init__(self, act_width, weight_width):
        super().__init__({"a": In(signed(act_width)), "w": In(signed(weight_width)), "load": In(1),
                          "product": Out(signed(act_width + weight_width))})

    def elaborate(self, platform):
        m = Module()
        a, w = delay(m, self.a, 1, "a"), delay(m, self.w, 1, "w")
        product = Signal.like(self.product, name="raw", reset_less=True)
        m.d.sync += product.eq(a * w)
        retimed = Signal.like(self.product, name="retimed", reset_less=True)
        with m.If(self.load):
            m.d.sync += retimed.eq(product)
        m.d.comb += self.product.eq(retimed)
        return m


def multipliers(m, valid, operands, act_width, weight_width):
    """One `Multiplier` per (a, w) pair of `operands` in `m` (submodules mul0, mul1, ...), their
    retiming enables from one pipeline of `valid`; returns (products, that pipeline's end:
    `valid` delayed Multiplier.load_delay cycles, for the caller to continue)."""
    load = delay(m, valid, Multiplier.load_delay, "valid")
    products = []
    for i, (a, w) in enumerate(operands):
        m.submodules[f"mul{i}"] = mul = Multiplier(act_width, weight_width)
        m.d.comb += [mul.a.eq(a), mul.w.eq(w), mul.load.eq(load)]
        products.append(mul.product)
    return products, load


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
        self.latency = Multiplier.latency + 1 + self.tree_levels
        super().__init__({
            "a": In(data.ArrayLayout(signed(act_width), n)),
            "w": In(data.ArrayLayout(signed(weight_width), n)),
            "valid": In(1), "last": In(1),
            "result": Out(signed(acc_width)), "result_valid": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        terms, loaded = multipliers(m, self.valid, [(self.a[i], self.w[i]) for i in range(self.n)],
                                    self.act_width, self.weight_width)
        prod_width = self.act_width + self.weight_width
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(prod_width + level + 1), name=f"sum{level}_{i}", reset_less=True)
                     for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        valid = delay(m, loaded, Multiplier.latency - Multiplier.load_delay + self.tree_levels, "valid_t")
        last = delay(m, self.valid & self.last, Multiplier.latency + self.tree_levels, "last")

        accumulate(m, terms[0], valid, last, self.result, self.result_valid, self.overflow,
                   saturate=self.saturate)
        return m
