"""Sparse processing element: one output of C = A x W, N multipliers fed through an N:M decoder.

Each valid beat brings one group of M activations (from the left) and N compressed weights with
their indices (from above); the PE forwards both, registered, to its right and lower neighbours.
Pipeline, from the PE's input ports:
  1 input registers (also the systolic forwarding registers)
  2 decoded operands
  3 multiplier input registers
  4 products (signed act x signed weight, one multiplier each)
  5 product retiming registers
  6.. adder tree, one register per level (ceil(log2 N) levels)
  last: accumulate; on a `last` beat the final sum goes to `result` and the accumulator restarts.
Stages 3 and 5 exist for FPGA timing: DSP blocks sit in columns away from the logic, so the
registers on both sides of a multiplier let the placer keep it register-to-register and turn the
long routes into register-to-register hops.
"""
from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .decoder import NMDecoder, index_layout

OVERFLOW_POLICIES = ("wrap", "saturate")


def pe_latency(n):
    """Cycles from a beat at the PE's input ports to its `result`: 6 stages + the adder tree."""
    return 6 + ceil_log2(n)


def weight_layout(n, m, width):
    """One column's compressed weights for one group: N values (+ N indices unless dense)."""
    fields = {"values": data.ArrayLayout(signed(width), n)}
    if n != m:
        fields["indices"] = index_layout(n, m)
    return data.StructLayout(fields)


class SparsePE(wiring.Component):
    """Accumulates sum over groups of (sum over the N kept k of act[k] * weight[k]).

    Latency: `LATENCY` cycles from a beat at the input ports to `result`/`result_valid`
    (the beat marked `last`); the forwarded outputs lag the inputs by 1 cycle.
    Overflow policy `wrap` or `saturate` on `acc_width` bits; `overflow` pulses on each
    accumulation whose exact sum falls outside that range.
    """

    def __init__(self, n, m, act_width, weight_width, acc_width, overflow="wrap"):
        assert overflow in OVERFLOW_POLICIES
        self.n, self.m = n, m
        self.act_width, self.weight_width, self.acc_width = act_width, weight_width, acc_width
        self.saturate = overflow == "saturate"
        self.tree_levels = ceil_log2(n)
        self.latency = pe_latency(n)
        act = data.ArrayLayout(signed(act_width), m)
        weight = weight_layout(n, m, weight_width)
        super().__init__({
            "act": In(act), "weight": In(weight), "valid": In(1), "last": In(1),
            "act_out": Out(act), "weight_out": Out(weight), "valid_out": Out(1), "last_out": Out(1),
            "result": Out(signed(acc_width)), "result_valid": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = NMDecoder(self.n, self.m, self.act_width)

        # Stage 1: input registers, forwarded to the neighbours.
        m.d.sync += [self.act_out.eq(self.act), self.weight_out.eq(self.weight),
                     self.valid_out.eq(self.valid), self.last_out.eq(self.valid & self.last)]
        m.d.comb += decoder.group.eq(self.act_out)
        if "indices" in decoder.signature.members:
            m.d.comb += decoder.indices.eq(self.weight_out.indices)

        # Stage 2: operands; 3: multiplier inputs; 4: products; 5: retimed products.
        operands = self._delay(m, decoder.operands, 2)
        weights = self._delay(m, self.weight_out.values, 2)
        prod_width = self.act_width + self.weight_width
        products = Signal(data.ArrayLayout(signed(prod_width), self.n))
        m.d.sync += [products[i].eq(operands[i] * weights[i]) for i in range(self.n)]
        products = self._delay(m, products, 1)
        terms = [products[i] for i in range(self.n)]
        valid, last = self._delay(m, self.valid_out, 4), self._delay(m, self.last_out, 4)

        # Adder tree: one registered level per halving.
        for level in range(self.tree_levels):
            width = prod_width + level + 1
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(width), name=f"sum{level}_{i}") for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        valid, last = self._delay(m, valid, self.tree_levels), self._delay(m, last, self.tree_levels)
        group_sum = terms[0]

        # Accumulate with the overflow policy; `last` publishes the tile's result and restarts.
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

    @staticmethod
    def _delay(m, signal, cycles):
        """`signal` delayed by `cycles` registers."""
        for i in range(cycles):
            delayed = Signal.like(signal, name=f"{signal.name}_d{i}") if isinstance(signal, Signal) \
                else Signal(signal.shape(), name=f"delayed{i}")
            m.d.sync += delayed.eq(signal)
            signal = delayed
        return signal
