"""N:M index decoder: routes the N kept activations of one group of M to N multipliers.

Combinational (latency 0): callers register its outputs.
"""
from amaranth import Module, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2


def index_bits(m):
    """Bits of one index into a group of M (0 for a group of one)."""
    return ceil_log2(m)


def index_layout(n, m):
    """Layout of one group's index metadata: N indices of ceil(log2 M) bits."""
    return data.ArrayLayout(unsigned(index_bits(m)), n)


def indices_malformed(indices, m) -> Value:
    """1 when a group's indices are not strictly increasing or one is >= M (SPEC §1)."""
    bad = [idx >= m for idx in indices] if m & (m - 1) else []
    bad += [indices[i] >= indices[i + 1] for i in range(len(indices) - 1)]
    return Value.cast(0) if not bad else _any(bad)


def _any(bits):
    out = bits[0]
    for bit in bits[1:]:
        out = out | bit
    return out


class NMDecoder(wiring.Component):
    """Selects, from one group of M activations, the N addressed by the weights' indices.

    Dense (N == M) needs no metadata: operand i is activation i. `malformed` rises when the
    group's indices break SPEC §1 (not strictly increasing, or >= M).
    """

    def __init__(self, n, m, width):
        self.n, self.m, self.width = n, m, width
        self.dense = n == m
        ports = {
            "group": In(data.ArrayLayout(signed(width), m)),
            "operands": Out(data.ArrayLayout(signed(width), n)),
            "malformed": Out(1),
        }
        if not self.dense:
            ports["indices"] = In(index_layout(n, m))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        if self.dense:
            m.d.comb += self.operands.eq(self.group)
            return m
        for i in range(self.n):
            m.d.comb += self.operands[i].eq(self.group[self.indices[i]])
        m.d.comb += self.malformed.eq(indices_malformed(self.indices, self.m))
        return m
